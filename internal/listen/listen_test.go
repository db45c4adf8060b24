package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serve answers 200 on every path over Limit(ln, 16, cfg) until the test
// ends.
func serve(t *testing.T, ln net.Listener, cfg *tls.Config) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(Limit(ln, 16, cfg)) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// Each address: what CheckAddr says of it, and whether only this host can
// reach it: not every interface, not a LAN address, not a host name other
// than localhost.
func TestAddresses(t *testing.T) {
	for _, tc := range []struct {
		addr  string
		local bool
		bad   string // what CheckAddr says; "" when it takes addr
	}{
		{"127.0.0.1:8080", true, ""},
		{"127.0.0.2:8080", true, ""},
		{"[::1]:0", true, ""},
		{"localhost:0", true, ""},
		{"LOCALHOST:1", true, ""},
		{"unix:/run/floodgate/floodgate.sock", true, ""},
		{"0.0.0.0:8080", false, ""},
		{":8080", false, ""},
		{"[::]:8080", false, ""},
		{"10.0.0.5:8080", false, ""},
		{"bot.example:8080", false, ""},
		{"127.0.0.1", false, "want host:port"},
		{"127.0.0.1:99999", true, "bad port"},
		{"unix:", true, "want unix:/path"},
	} {
		err := CheckAddr(tc.addr)
		if (tc.bad == "") != (err == nil) || err != nil && (!strings.HasPrefix(err.Error(), "listen: ") || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("CheckAddr(%q): %v, want %q", tc.addr, err, tc.bad)
		}
		if got := Local(tc.addr); got != tc.local {
			t.Errorf("Local(%q) = %v, want %v", tc.addr, got, tc.local)
		}
	}
}

// The socket file: mode 0660 (0600 under umask 077), answers HTTP, is
// refused to a second server while the first lives, and is gone once the
// listener closes.
func TestUnixSocketListener(t *testing.T) {
	for _, umask := range []int{0o022, 0o077} {
		path := filepath.Join(t.TempDir(), "floodgate.sock")
		old := syscall.Umask(umask)
		ln, err := Open("unix:" + path)
		if got := syscall.Umask(old); got != umask {
			t.Fatalf("Open left the umask at %#o, want %#o", got, umask)
		}
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o660) &^ fs.FileMode(umask)
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != want {
			t.Fatalf("umask %#o: socket mode %v, want %v", umask, fi.Mode(), want)
		}
		if umask == 0o077 {
			ln.Close()
			continue
		}
		serve(t, ln, nil)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", path)
			}}}
		resp, err := c.Get("http://floodgate/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET over the socket: %v %v", resp, err)
		}
		resp.Body.Close()
		c.CloseIdleConnections()
		if _, err := Open("unix:" + path); err == nil || !strings.Contains(err.Error(), "a server is answering on it") {
			t.Fatalf("second server on a live socket: %v", err)
		}
		ln.Close()
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("socket file after close: %v (want it removed)", err)
		}
	}
}

// A socket file left by a server that died (nobody listens) is replaced;
// any other file at the path is left alone and refused.
func TestUnixSocketStaleAndForeign(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false) // as after kill -9
	dead.Close()
	if _, err := os.Lstat(stale); err != nil {
		t.Fatal(err)
	}
	ln, err := Open("unix:" + stale)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ln.Close()

	regular := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("unix:" + regular); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if data, _ := os.ReadFile(regular); string(data) != "keep me" {
		t.Fatalf("regular file now %q", data)
	}
	if _, err := Open("unix:" + filepath.Join(dir, "no", "such", "dir.sock")); err == nil {
		t.Fatal("socket in a missing directory: no error")
	}
}
