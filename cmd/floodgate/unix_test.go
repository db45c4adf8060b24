package main

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unixClient sends HTTP requests to the socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
}

// The socket file: mode 0660 (0600 under umask 077), answers HTTP, is
// refused to a second server while the first lives, and is gone when the
// server stops.
func TestUnixSocketListener(t *testing.T) {
	for _, umask := range []int{0o022, 0o077} {
		path := filepath.Join(t.TempDir(), "floodgate.sock")
		old := syscall.Umask(umask)
		ln, err := openListener("unix:" + path)
		if got := syscall.Umask(old); got != umask {
			t.Fatalf("openListener left the umask at %#o, want %#o", got, umask)
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

		set := testSettings()
		set.Addr, set.Token = "unix:"+path, "0123456789abcdef"
		stop := serveTest(t, ln, set, &logBuffer{})
		for p, want := range map[string]int{"/healthz": 200, "/metrics": 401} { // a token set is asked here too
			resp, err := unixClient(path).Get("http://floodgate" + p)
			if err != nil || resp.StatusCode != want {
				t.Fatalf("GET %s over the socket: %v %v, want %d", p, resp, err, want)
			}
			resp.Body.Close()
		}
		if _, err := openListener("unix:" + path); err == nil || !strings.Contains(err.Error(), "a server is answering on it") {
			t.Fatalf("second server on a live socket: %v", err)
		}
		stop()
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("socket file after shutdown: %v (want it removed)", err)
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
	ln, err := openListener("unix:" + stale)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ln.Close()

	regular := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openListener("unix:" + regular); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if data, _ := os.ReadFile(regular); string(data) != "keep me" {
		t.Fatalf("regular file now %q", data)
	}
	if _, err := openListener("unix:" + filepath.Join(dir, "no", "such", "dir.sock")); err == nil {
		t.Fatal("socket in a missing directory: no error")
	}
}
