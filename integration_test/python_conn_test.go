package integration_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
)

// Issue 17 item 3 for the Python clients: a kept-alive connection that the
// server closed (a restart, an idle timeout) is never an error and never
// makes a request count twice.

// pyKeepAliveBot holds one Client and one AsyncClient for the whole run.
// Each "allow" line on stdin makes each client call allow once for its own
// user; it answers {"sync": allowed, "async": allowed, "errors": [...]}.
const pyKeepAliveBot = `
import asyncio, json, os, sys
import floodgate

async def main():
    url, token = os.environ["FLOODGATE_TEST_URL"], os.environ["FLOODGATE_TEST_TOKEN"]
    fg = floodgate.Client(url, token=token, timeout=5)
    async with floodgate.AsyncClient(url, token=token, timeout=5) as afg:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                return
            out = {"errors": []}
            try:
                out["sync"] = fg.allow(os.environ["SYNC_USER"]).allowed
            except floodgate.FloodgateError as e:
                out["errors"].append("sync: %s" % e)
            try:
                out["async"] = (await afg.allow(os.environ["ASYNC_USER"])).allowed
            except floodgate.FloodgateError as e:
                out["errors"].append("async: %s" % e)
            print(json.dumps(out), flush=True)

asyncio.run(main())
`

type pyBot struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
	err   *strings.Builder
}

func startPyKeepAliveBot(t *testing.T, baseURL, token, syncUser, asyncUser string) *pyBot {
	t.Helper()
	py := needPython(t)
	abs, err := filepath.Abs(pyClientDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	b := &pyBot{t: t, cmd: exec.CommandContext(ctx, py, "-c", pyKeepAliveBot), err: &strings.Builder{}}
	b.cmd.Env = append(os.Environ(), "PYTHONPATH="+abs, "PYTHONDONTWRITEBYTECODE=1", "FLOODGATE_TEST_URL="+baseURL,
		"FLOODGATE_TEST_TOKEN="+token, "SYNC_USER="+syncUser, "ASYNC_USER="+asyncUser)
	b.cmd.Stderr = b.err
	if b.in, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	b.lines = bufio.NewScanner(out)
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.in.Close(); _ = b.cmd.Wait() })
	return b
}

// allow has both clients call allow once; each must be allowed, without error.
func (b *pyBot) allow(step string) {
	b.t.Helper()
	io.WriteString(b.in, "allow\n")
	if !b.lines.Scan() {
		b.t.Fatalf("%s: python bot printed nothing: %v\n%s", step, b.lines.Err(), b.err.String())
	}
	var res struct {
		Sync, Async bool
		Errors      []string
	}
	if err := json.Unmarshal(b.lines.Bytes(), &res); err != nil {
		b.t.Fatalf("%s: %q: %v", step, b.lines.Text(), err)
	}
	if len(res.Errors) > 0 || !res.Sync || !res.Async {
		b.t.Fatalf("%s: want both allowed without error, got %s", step, b.lines.Text())
	}
}

// pyEntries is the user's count in its window, read through the server.
func pyEntries(t *testing.T, baseURL, token, user string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", baseURL+"/v1/users/"+url.PathEscape(user), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct{ Entries int }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("peek %s: %d %v", user, resp.StatusCode, err)
	}
	return st.Entries
}

// TestPythonClientsSurviveServerRestart: both clients call allow, the
// sidecar restarts on the same address, both call again: no error, and
// each user's count went up by exactly one per call.
func TestPythonClientsSurviveServerRestart(t *testing.T) {
	skipIfShort(t) // -short keeps TestServeReadinessRedisRestart
	needPython(t)
	rdb := client(t)
	token := randomHex(t, 16)
	env := map[string]string{
		"FLOODGATE_KEY_PREFIX":    uniquePrefix(t, rdb),
		"FLOODGATE_HTTP_TOKEN":    token,
		"FLOODGATE_USER_COOLDOWN": "0",
		"FLOODGATE_REDIS_TIMEOUT": clientRedisTimeout.String(),
	}
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startServeOn(t, addr, env)
	bot := startPyKeepAliveBot(t, srv.URL, token, "restart-sync", "restart-async")
	for round := 1; round <= 3; round++ {
		bot.allow(fmt.Sprintf("round %d", round))
		for _, u := range []string{"restart-sync", "restart-async"} {
			if n := pyEntries(t, srv.URL, token, u); n != round {
				t.Fatalf("round %d: %s has %d requests counted, want exactly %d", round, u, n, round)
			}
		}
		if err := srv.Stop(); err != nil {
			t.Fatalf("stop: %v\n%s", err, srv.Output())
		}
		srv = startServeOn(t, addr, env)
	}
}

// TestPythonClientsSurviveIdleTimeout: the server closes connections idle
// for 200ms (FLOODGATE_HTTP_IDLE_TIMEOUT) while the clients pause 700ms
// between calls: every call succeeds and counts exactly once. A proxy in
// front (node_test.go's idleProxy, its own timeout out of reach) counts
// the connections.
func TestPythonClientsSurviveIdleTimeout(t *testing.T) {
	skipIfShort(t) // -short keeps TestClientsAndGoReplicaShareLimits
	needPython(t)
	rdb := client(t)
	token := randomHex(t, 16)
	srv := startServeProc(t, map[string]string{
		"FLOODGATE_KEY_PREFIX":        uniquePrefix(t, rdb),
		"FLOODGATE_HTTP_TOKEN":        token,
		"FLOODGATE_USER_COOLDOWN":     "0",
		"FLOODGATE_REDIS_TIMEOUT":     clientRedisTimeout.String(),
		"FLOODGATE_HTTP_IDLE_TIMEOUT": "200ms",
	})
	proxy := startIdleProxy(t, strings.TrimPrefix(srv.URL, "http://"), time.Hour)
	bot := startPyKeepAliveBot(t, "http://"+proxy.ln.Addr().String(), token, "idle-sync", "idle-async")
	const rounds = 4
	for round := 1; round <= rounds; round++ {
		bot.allow(fmt.Sprintf("round %d", round))
		time.Sleep(700 * time.Millisecond)
	}
	for _, u := range []string{"idle-sync", "idle-async"} {
		if n := pyEntries(t, srv.URL, token, u); n != rounds {
			t.Errorf("%s has %d requests counted, want exactly %d", u, n, rounds)
		}
	}
	// Each call of each client on a connection of its own: the idle one
	// was closed every time (else the test tested nothing), and no call
	// was sent a second time on another.
	if n := proxy.conns.Load(); n != 2*rounds {
		t.Fatalf("the proxy saw %d connections, want %d (one per call)", n, 2*rounds)
	}
}
