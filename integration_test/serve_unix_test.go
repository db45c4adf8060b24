package integration_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeUnixSocket: `floodgate serve --addr unix:PATH` without a token
// (a unix socket is local): the socket file has mode 0660 or tighter; both
// Python clients and the Node client (unix:///PATH) get decisions through
// it, each counted once; a second server is refused while the first
// lives; after kill -9 the stale socket is replaced; a clean stop removes
// it.
func TestServeUnixSocket(t *testing.T) {
	env, lim := countingSetup(t, 100)
	sock := filepath.Join(t.TempDir(), "floodgate.sock")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	start := func() *serveProc {
		t.Helper()
		return startServeVia(t, c, "http://floodgate", env, "--addr", "unix:"+sock)
	}
	srv := start()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm()&^0o660 != 0 {
		t.Fatalf("socket mode %v, want 0660 or tighter", fi.Mode())
	}
	if !strings.Contains(srv.Output(), "serving on unix:"+sock+" (no token") {
		t.Fatalf("start-up log:\n%s", srv.Output())
	}

	url := "unix://" + sock
	py := runPyTransport(t, url, "", nil, "none")
	node := runNodeTransport(t, url, "", nil, "none")
	for name, r := range map[string]transportResult{"python Client": py["none"]["sync"], "python AsyncClient": py["none"]["async"], "node": node["none"]} {
		if !r.Allowed || r.Error != "" {
			t.Errorf("%s over %s: %+v", name, url, r)
		}
	}
	for _, u := range []string{"py-sync-none", "py-async-none", "node-none"} {
		wantEntries(t, lim, u, 1)
	}

	second := exec.Command(commandBin(t, "floodgate"), "serve", "--addr", "unix:"+sock)
	second.Env = serveEnv(map[string]string{"FLOODGATE_REDIS_URL": redisURL}, env)
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "a server is answering on it") {
		t.Fatalf("second server on the live socket: %v\n%s", err, out)
	}
	if resp, err := c.Get("http://floodgate/healthz"); err != nil {
		t.Fatalf("the first server after the refused second: %v", err)
	} else {
		resp.Body.Close()
	}

	_ = srv.cmd.Process.Kill()
	<-srv.exited
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("after kill -9 the socket file should remain (stale): %v", err)
	}
	srv = start() // replaces the stale socket
	if r := runPyTransport(t, url, "", nil, "none")["none"]["sync"]; !r.Allowed {
		t.Fatalf("python after the stale socket was replaced: %+v", r)
	}
	wantEntries(t, lim, "py-sync-none", 2)
	if err := srv.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Output())
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file after a clean stop: %v (want removed)", err)
	}
}
