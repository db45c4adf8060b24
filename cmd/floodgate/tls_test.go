package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// serveTest runs serveOn on ln with set over a miniredis until stop is
// called or the test ends.
func serveTest(t *testing.T, ln net.Listener, set httpSettings, logs *logBuffer) (stop func()) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	lim, err := limiter.New(rdb, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveOn(ctx, ln, lim, rdb, set, prometheus.NewRegistry(), logs.logf, nil) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		rdb.Close()
	})
	t.Cleanup(stop)
	return stop
}

func genTLS(t *testing.T) *redisproc.TLSFiles {
	t.Helper()
	f, err := redisproc.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Bad TLS and idle settings stop serve before it starts anything, with
// exit status 2 and a line naming the variable.
func TestServeRefusesBadTLSSettings(t *testing.T) {
	a, b := genTLS(t), genTLS(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLOODGATE_REDIS_URL", "redis://127.0.0.1:1")
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"FLOODGATE_HTTP_TLS_CERT": a.CertFile}, "FLOODGATE_HTTP_TLS_CERT and FLOODGATE_HTTP_TLS_KEY go together"},
		{map[string]string{"FLOODGATE_HTTP_TLS_KEY": a.KeyFile}, "go together"},
		{map[string]string{"FLOODGATE_HTTP_TLS_CERT": "/nonexistent.crt", "FLOODGATE_HTTP_TLS_KEY": a.KeyFile}, "FLOODGATE_HTTP_TLS_CERT: open /nonexistent.crt"},
		{map[string]string{"FLOODGATE_HTTP_TLS_CERT": a.CertFile, "FLOODGATE_HTTP_TLS_KEY": "/nonexistent.key"}, "FLOODGATE_HTTP_TLS_KEY: open /nonexistent.key"},
		{map[string]string{"FLOODGATE_HTTP_TLS_CERT": a.CertFile, "FLOODGATE_HTTP_TLS_KEY": b.KeyFile}, "private key does not match public key"},
		{map[string]string{"FLOODGATE_HTTP_TLS_CERT": junk, "FLOODGATE_HTTP_TLS_KEY": a.KeyFile}, "FLOODGATE_HTTP_TLS_CERT and FLOODGATE_HTTP_TLS_KEY"},
		{map[string]string{"FLOODGATE_HTTP_TLS_CERT": a.CertFile, "FLOODGATE_HTTP_TLS_KEY": a.KeyFile, "FLOODGATE_HTTP_CLIENT_CA": junk}, "FLOODGATE_HTTP_CLIENT_CA: " + junk + " holds no PEM certificate"},
		{map[string]string{"FLOODGATE_HTTP_TLS_CERT": a.CertFile, "FLOODGATE_HTTP_TLS_KEY": a.KeyFile, "FLOODGATE_HTTP_CLIENT_CA": "/nonexistent.ca"}, "FLOODGATE_HTTP_CLIENT_CA: open /nonexistent.ca"},
		{map[string]string{"FLOODGATE_HTTP_CLIENT_CA": a.CAFile}, "FLOODGATE_HTTP_CLIENT_CA needs FLOODGATE_HTTP_TLS_CERT"},
		{map[string]string{"FLOODGATE_HTTP_TLS_CERT": a.CertFile, "FLOODGATE_HTTP_TLS_KEY": a.KeyFile, "FLOODGATE_HTTP_ADDR": "unix:/tmp/x.sock"}, "with a unix socket"},
		{map[string]string{"FLOODGATE_HTTP_ADDR": "unix:"}, "want unix:/path"},
		{map[string]string{"FLOODGATE_HTTP_IDLE_TIMEOUT": "50ms"}, "FLOODGATE_HTTP_IDLE_TIMEOUT) must be between 100ms and 1h"},
		{map[string]string{"FLOODGATE_HTTP_IDLE_TIMEOUT": "2h"}, "FLOODGATE_HTTP_IDLE_TIMEOUT) must be between"},
		{map[string]string{"FLOODGATE_HTTP_IDLE_TIMEOUT": "soon"}, "FLOODGATE_HTTP_IDLE_TIMEOUT: \"soon\" is neither"},
	} {
		for _, k := range []string{"FLOODGATE_HTTP_TLS_CERT", "FLOODGATE_HTTP_TLS_KEY", "FLOODGATE_HTTP_CLIENT_CA", "FLOODGATE_HTTP_IDLE_TIMEOUT"} {
			t.Setenv(k, tc.env[k])
		}
		t.Setenv("FLOODGATE_HTTP_ADDR", "127.0.0.1:0")
		if v, ok := tc.env["FLOODGATE_HTTP_ADDR"]; ok {
			t.Setenv("FLOODGATE_HTTP_ADDR", v)
		}
		var out, errOut bytes.Buffer
		err := Run(context.Background(), []string{"serve"}, &out, &errOut)
		if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v (exit %d), want %q", tc.env, err, cli.ExitCode(err), tc.want)
		}
	}
}

// A unix socket is local: no token needed, as on loopback.
func TestUnixSocketIsLocal(t *testing.T) {
	s := testSettings()
	s.Addr = "unix:/run/floodgate/floodgate.sock"
	if err := s.validate(); err != nil || !s.local() {
		t.Fatalf("unix socket without a token: %v, local %v", err, s.local())
	}
	s.Addr = "0.0.0.0:8080"
	if s.local() {
		t.Fatal("0.0.0.0 is local?")
	}
}

// The certificate is read again when its files change: a pair that does
// not load yet (the certificate rotated before the key) keeps the current
// one, logged; the complete new pair serves from the next handshake.
// SIGHUP reads the files again even when they did not change.
func TestCertReload(t *testing.T) {
	a, b := genTLS(t), genTLS(t)
	dir := t.TempDir()
	set := testSettings()
	set.TLSCert, set.TLSKey = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	install := func(src, dst string) {
		t.Helper()
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		tmp := dst + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			t.Fatal(err)
		}
	}
	install(a.CertFile, set.TLSCert)
	install(a.KeyFile, set.TLSKey)
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := set.loadTLS(ctx, logs.logf)
	if err != nil {
		t.Fatal(err)
	}
	set.tls = cfg
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveTest(t, ln, set, logs)
	base := "https://" + ln.Addr().String()

	// get asks for /healthz trusting only ca, on a new connection.
	get := func(ca *redisproc.TLSFiles) error {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(), DisableKeepAlives: true}}
		resp, err := c.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(a); err != nil {
		t.Fatalf("first certificate: %v", err)
	}
	// A kept-alive connection made before the rotation.
	kept := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: a.ClientConfig()}}
	defer kept.CloseIdleConnections()
	keptGet := func() (reused bool, err error) {
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/healthz", nil)
		resp, err := kept.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return reused, err
	}
	if _, err := keptGet(); err != nil {
		t.Fatal(err)
	}
	if get(b) == nil {
		t.Fatal("a client trusting only the other CA connected")
	}

	install(b.CertFile, set.TLSCert) // the key is still a's
	if err := get(a); err != nil {
		t.Fatalf("during the rotation (new certificate, old key): %v; the old pair should still serve", err)
	}
	if !strings.Contains(logs.String(), "private key does not match public key; still serving the certificate read before") {
		t.Fatalf("log: %s", logs.String())
	}
	install(b.KeyFile, set.TLSKey)
	if err := get(b); err != nil {
		t.Fatalf("after the rotation: %v\nlog: %s", err, logs.String())
	}
	if get(a) == nil {
		t.Fatal("the old certificate still served after the rotation")
	}
	if reused, err := keptGet(); err != nil || !reused {
		t.Fatalf("a connection open before the rotation: reused %v, %v", reused, err)
	}

	n := strings.Count(logs.String(), "TLS: serving the certificate")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Count(logs.String(), "TLS: serving the certificate") == n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not read the certificate again; log: %s", logs.String())
		}
	}
}

// Plain HTTP sent to the TLS port gets a JSON 400 saying what to fix, not
// a silently closed connection.
func TestPlainHTTPToTLSPort(t *testing.T) {
	a := genTLS(t)
	set := testSettings()
	set.TLSCert, set.TLSKey = a.CertFile, a.KeyFile
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &logBuffer{}
	var err error
	if set.tls, err = set.loadTLS(ctx, logs.logf); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveTest(t, ln, set, logs)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"this server speaks TLS: use an https:// URL"`) {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	// And TLS itself is 1.2 at least.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.CAPool, MaxVersion: tls.VersionTLS11}}}
	if resp, err := c.Get("https://" + ln.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("TLS 1.1 accepted")
	}
}
