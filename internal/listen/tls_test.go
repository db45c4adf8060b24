package listen

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
)

// logLines is a logf for LoadTLS, which logs from handshakes, and
// waitLog, which waits (5 s at most) for the next line containing want,
// failing the test otherwise.
func logLines(t *testing.T) (logf func(string, ...any), waitLog func(want string)) {
	lines := make(chan string, 64)
	logf = func(format string, a ...any) { lines <- fmt.Sprintf(format, a...) }
	waitLog = func(want string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case line := <-lines:
				if strings.Contains(line, want) {
					return
				}
			case <-timeout:
				t.Fatalf("no log line %q within 5 s", want)
			}
		}
	}
	return logf, waitLog
}

// serveTLS serves files over TLS on a loopback port until the test ends
// and returns the base URL.
func serveTLS(t *testing.T, files TLSFiles, logf func(string, ...any)) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg, err := LoadTLS(ctx, files, logf)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, cfg)
	return "https://" + ln.Addr().String()
}

func genTLS(t *testing.T) *redisproc.TLSFiles {
	t.Helper()
	f, err := redisproc.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Errors name the setting to fix.
func TestLoadTLSErrors(t *testing.T) {
	a, b := genTLS(t), genTLS(t)
	for _, tc := range []struct {
		files TLSFiles
		want  string
	}{
		{TLSFiles{Cert: File{"/nonexistent.crt", "C"}, Key: File{a.KeyFile, "K"}}, "listen: C: open /nonexistent.crt"},
		{TLSFiles{Cert: File{a.CertFile, "C"}, Key: File{"/nonexistent.key", "K"}}, "listen: K: open /nonexistent.key"},
		{TLSFiles{Cert: File{a.CertFile, "C"}, Key: File{b.KeyFile, "K"}}, "listen: C and K (" + a.CertFile + ", " + b.KeyFile + "): tls: private key does not match public key"},
		{TLSFiles{Cert: File{a.CertFile, "C"}, Key: File{a.KeyFile, "K"}, ClientCA: File{a.KeyFile, "CA"}}, "listen: CA: " + a.KeyFile + " holds no PEM certificate"},
		{TLSFiles{Cert: File{a.CertFile, "C"}, Key: File{a.KeyFile, "K"}, ClientCA: File{"/nonexistent.ca", "CA"}}, "listen: CA: open /nonexistent.ca"},
	} {
		if _, err := LoadTLS(context.Background(), tc.files, t.Logf); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.files, err, tc.want)
		}
	}
}

// The certificate is read again when its files change: a pair that does
// not load yet (the certificate rotated before the key) keeps the current
// one, logged; the complete new pair serves from the next handshake.
// SIGHUP reads the files again even when they did not change.
func TestCertReload(t *testing.T) {
	a, b := genTLS(t), genTLS(t)
	dir := t.TempDir()
	files := TLSFiles{Cert: File{filepath.Join(dir, "tls.crt"), "C"}, Key: File{filepath.Join(dir, "tls.key"), "K"}}
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
	install(a.CertFile, files.Cert.Path)
	install(a.KeyFile, files.Key.Path)
	logf, waitLog := logLines(t)
	base := serveTLS(t, files, logf)

	// get asks for / trusting only ca, on a new connection.
	get := func(ca *redisproc.TLSFiles) error {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(), DisableKeepAlives: true}}
		resp, err := c.Get(base + "/")
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
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/", nil)
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

	install(b.CertFile, files.Cert.Path) // the key is still a's
	if err := get(a); err != nil {
		t.Fatalf("during the rotation (new certificate, old key): %v; the old pair should still serve", err)
	}
	waitLog("private key does not match public key; still serving the certificate read before")
	install(b.KeyFile, files.Key.Path)
	if err := get(b); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	if get(a) == nil {
		t.Fatal("the old certificate still served after the rotation")
	}
	if reused, err := keptGet(); err != nil || !reused {
		t.Fatalf("a connection open before the rotation: reused %v, %v", reused, err)
	}

	waitLog("TLS: serving the certificate in " + files.Cert.Path) // the rotation's
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("TLS: serving the certificate in " + files.Cert.Path)
}

// Plain HTTP sent to the TLS port gets a JSON 400 saying what to fix, not
// a silently closed connection; TLS itself is 1.2 at least.
func TestPlainHTTPToTLSPort(t *testing.T) {
	a := genTLS(t)
	base := serveTLS(t, TLSFiles{Cert: File{a.CertFile, "C"}, Key: File{a.KeyFile, "K"}}, func(string, ...any) {})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http" + strings.TrimPrefix(base, "https") + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || string(body) != `{"error":"this server speaks TLS: use an https:// URL"}`+"\n" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.CAPool, MaxVersion: tls.VersionTLS11}}}
	if resp, err := c.Get(base + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("TLS 1.1 accepted")
	}
}
