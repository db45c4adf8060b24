package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/internal/listen"
	"github.com/floodgate/floodgate/internal/redisproc"
)

// serveTest runs serveOn on ln with set over a miniredis until stop is
// called or the test ends.
func serveTest(t *testing.T, ln net.Listener, set httpSettings, logs *logBuffer) (stop func()) {
	t.Helper()
	_, rdb, lim := testLimiter(t, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveOn(ctx, ln, lim, rdb, set, prometheus.NewRegistry(), logs.logf) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(stop)
	return stop
}

func TestListenRules(t *testing.T) {
	ok := testSettings()
	for _, tc := range []struct {
		addr, token string
		want        string // "" means accepted
	}{
		{"127.0.0.1:8080", "", ""},
		{"localhost:0", "", ""},
		{"[::1]:8080", "", ""},
		{"127.0.0.2:8080", "", ""},
		{"0.0.0.0:8080", "", "refusing to listen on 0.0.0.0:8080 without FLOODGATE_HTTP_TOKEN"},
		{":8080", "", "refusing to listen on :8080 without FLOODGATE_HTTP_TOKEN"},
		{"[::]:8080", "", "refusing"},
		{"10.0.0.5:8080", "", "refusing"},
		{"bot.example:8080", "", "refusing"},
		{"0.0.0.0:8080", "0123456789abcdef", ""},
		{"0.0.0.0:8080", "short", "at least 16"},
		{"127.0.0.1:8080", "0123456789abcdef 1", "spaces"},
		{"127.0.0.1", "", "want host:port"},
		{"127.0.0.1:99999", "", "bad port"},
	} {
		s := ok
		s.Addr, s.Token = tc.addr, tc.token
		err := s.validate()
		if (tc.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n"))) {
			t.Errorf("%s token %q: %v, want %q", tc.addr, tc.token, err, tc.want)
		}
	}
}

// The connection bounds docs/sidecar.md promises.
func TestHTTPServerBounds(t *testing.T) {
	set := testSettings()
	srv := newHTTPServer(http.NotFoundHandler(), set, func(string, ...any) {})
	if srv.ReadHeaderTimeout != 5*time.Second || srv.ReadTimeout != 10*time.Second || srv.MaxHeaderBytes != 12<<10 ||
		srv.WriteTimeout <= set.MaxWait || srv.IdleTimeout == 0 {
		t.Fatalf("%+v", srv)
	}
}

// serve sets its GC target unless GOGC is set (the runtime has applied
// GOGC then, and serve leaves it alone).
func TestServeGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	serveGC("50")
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC set, serveGC changed the GC percent to %d", got)
	}
	serveGC("")
	if got := debug.SetGCPercent(100); got != serveGCPercent {
		t.Fatalf("without GOGC, GC percent %d, want %d", got, serveGCPercent)
	}
}

// serve refuses a non-loopback address without a token before it starts
// anything, with a one-line reason and exit status 2.
func TestServeRefusesOpenAddress(t *testing.T) {
	t.Setenv("FLOODGATE_HTTP_ADDR", "0.0.0.0:0")
	t.Setenv("FLOODGATE_HTTP_TOKEN", "")
	t.Setenv("FLOODGATE_REDIS_URL", "redis://127.0.0.1:1")
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"serve"}, &out, &errOut)
	if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "refusing to listen on 0.0.0.0:0 without FLOODGATE_HTTP_TOKEN") {
		t.Fatalf("serve on 0.0.0.0 without a token: %v", err)
	}
	for _, bad := range []map[string]string{
		{"FLOODGATE_HTTP_MAX_WAIT": "forever"},
		{"FLOODGATE_HTTP_MAX_WAITS": "many"},
		{"FLOODGATE_HTTP_MAX_WAITS": "0"},
		{"FLOODGATE_HTTP_SHUTDOWN_TIMEOUT": "2h"},
	} {
		t.Setenv("FLOODGATE_HTTP_ADDR", "127.0.0.1:0")
		for k, v := range bad {
			t.Setenv(k, v)
		}
		err := Run(context.Background(), []string{"serve"}, &out, &errOut)
		if err == nil || cli.ExitCode(err) != 2 {
			t.Errorf("%v: %v", bad, err)
		}
		for k := range bad {
			t.Setenv(k, "")
		}
	}
}

// Shutdown: a wait in flight completes (with its current answer), the
// server stops within the bound, and new connections are refused.
func TestGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	set := testSettings()
	set.MaxWait = 20 * time.Second
	set.ShutdownTimeout = 5 * time.Second
	logs := &logBuffer{}
	stop := serveTest(t, ln, set, logs)

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	post := func(path, body string) (*http.Response, error) {
		return client.Post(base+path, "application/json", strings.NewReader(body))
	}
	// wikipedia: 1/s, burst 1. Take the token, then wait for the next.
	for {
		resp, err := post("/v1/buckets/wikipedia/allow", "")
		if err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	type answer struct {
		status int
		body   map[string]any
		err    error
	}
	inflight := make(chan answer, 1)
	go func() {
		// Allowed after ~1 s unless shutdown ends the wait first.
		resp, err := post("/v1/buckets/wikipedia/wait", `{"timeout_ms":5000}`)
		if err != nil {
			inflight <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		data, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(data, &m)
		inflight <- answer{status: resp.StatusCode, body: m}
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	stop() // fails the test if serveOn returns an error
	took := time.Since(start)
	a := <-inflight
	if a.err != nil || a.status != 200 || a.body["allowed"] != false || a.body["reason"] != "rate" {
		t.Fatalf("in-flight wait at shutdown: %+v", a)
	}
	if took > 2*time.Second {
		t.Fatalf("shutdown took %v with one wait in flight", took)
	}
	if resp, err := (&http.Client{Timeout: time.Second}).Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("a new request after shutdown got %d", resp.StatusCode)
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Fatalf("log: %s", logs.String())
	}
}

// Bad TLS and idle settings stop serve before it starts anything, with
// exit status 2 and a line naming the variable.
func TestServeRefusesBadTLSSettings(t *testing.T) {
	a, errA := redisproc.GenerateTLS(t.TempDir())
	b, errB := redisproc.GenerateTLS(t.TempDir())
	if err := errors.Join(errA, errB); err != nil {
		t.Fatal(err)
	}
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
	if err := s.validate(); err != nil || !listen.Local(s.Addr) {
		t.Fatalf("unix socket without a token: %v, local %v", err, listen.Local(s.Addr))
	}
	s.Addr = "0.0.0.0:8080"
	if listen.Local(s.Addr) {
		t.Fatal("0.0.0.0 is local?")
	}
}

// Over a unix socket the server answers, and asks the token where one is
// set; the socket file is gone once it stops (internal/listen tests the
// socket itself).
func TestUnixSocketServes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floodgate.sock")
	ln, err := listen.Open("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	set := testSettings()
	set.Addr, set.Token = "unix:"+path, "0123456789abcdef"
	stop := serveTest(t, ln, set, &logBuffer{})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
	for p, want := range map[string]int{"/healthz": 200, "/metrics": 401} { // a token set is asked here too
		resp, err := c.Get("http://floodgate" + p)
		if err != nil || resp.StatusCode != want {
			t.Fatalf("GET %s over the socket: %v %v, want %d", p, resp, err, want)
		}
		resp.Body.Close()
	}
	stop()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file after shutdown: %v (want it removed)", err)
	}
}
