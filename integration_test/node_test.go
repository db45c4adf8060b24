package integration_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// The Node client (clients/node) against a real `floodgate serve` on a real
// Redis: its node --test suite (unit, live, recipes, npm pack), a sidecar
// restarted between two calls of one client, a server-side idle close, and
// example.js.

const nodeClientDir = "../clients/node"

// nodeEnv is the environment for node processes: the test's, without
// FLOODGATE_* settings that would leak into the client tests.
func nodeEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLOODGATE_") && !strings.HasPrefix(kv, "NODE_OPTIONS=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// TestNodeClient runs clients/node's `node --test` suite with
// FLOODGATE_TEST_URL pointing at a real server (with a token, so auth is
// exercised) and a test CA made here, and checks that every test ran and
// passed: none skipped.
func TestNodeClient(t *testing.T) {
	skipIfShort(t) // -short keeps TestClientsAndGoReplicaShareLimits
	node := needNode(t)
	srv, token, tlsFiles := startSuiteServe(t, "nodetest")
	files, err := filepath.Glob(filepath.Join(nodeClientDir, "test", "*.test.js"))
	if err != nil || len(files) < 4 {
		t.Fatalf("node test files: %v %v", files, err)
	}
	args := []string{"--test", "--test-reporter=tap"}
	for _, f := range files {
		args = append(args, filepath.Join("test", filepath.Base(f)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = nodeClientDir
	cmd.Env = nodeEnv("FLOODGATE_TEST_URL="+srv.URL, "FLOODGATE_TEST_TOKEN="+token, "FLOODGATE_TEST_BUCKET=nodetest",
		"FLOODGATE_TEST_TLS_CA="+tlsFiles.CAFile, "FLOODGATE_TEST_TLS_CERT="+tlsFiles.CertFile, "FLOODGATE_TEST_TLS_KEY="+tlsFiles.KeyFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s\nserver output:\n%s", strings.Join(args, " "), err, out, srv.Output())
	}
	// Node 20 reports each test at the top level; Node 18 nests them under
	// their file.
	top := regexp.MustCompile(`(?m)^\s*(not ok|ok) \d+ - (.*)$`)
	ran, live := 0, 0
	for _, m := range top.FindAllStringSubmatch(string(out), -1) {
		if m[1] != "ok" || strings.Contains(m[2], "# SKIP") || strings.Contains(m[2], "# TODO") {
			t.Errorf("node test %q: %s", m[2], m[1])
		}
		if strings.HasPrefix(m[2], "live:") || strings.HasPrefix(m[2], "recipe ") {
			live++
		}
		ran++
	}
	if !regexp.MustCompile(`(?m)^# skipped 0$`).Match(out) || !regexp.MustCompile(`(?m)^# fail 0$`).Match(out) {
		t.Errorf("node --test summary shows failures or skips:\n%s", out)
	}
	if ran < 25 || live < 9 {
		t.Fatalf("only %d node tests (%d against the server) ran; output:\n%s", ran, live, out)
	}
	t.Logf("%d node tests passed, %d of them against %s", ran, live, srv.URL)
}

// nodeDriver is a bot process using the Node client, driven line by line
// on stdin; each command prints one JSON line:
//
//	allow USER            one allow
//	burst N PREFIX        N concurrent allows (users PREFIX0..), so the pool holds several sockets
//	sleep MS              wait with the event loop free
//	blockuntil FILE USER  block the event loop (a busy handler) until FILE exists, then allow USER
//	hammer U A C          A allows for each of U users viewerNN, C at a time: allowed per user
const nodeDriver = `
import fs from 'node:fs';
import readline from 'node:readline';
const { Client } = await import(process.env.FG_INDEX);
const fg = new Client({ baseUrl: process.env.FLOODGATE_TEST_URL, timeoutMs: 10000 });
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
async function allow(u) {
  try { const d = await fg.allow(u); return { ok: true, allowed: d.allowed, reason: d.reason }; }
  catch (e) { return { ok: false, error: e.name + ': ' + e.message }; }
}
out({ ready: true });
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [cmd, a, b] = line.trim().split(' ');
  if (cmd === 'allow') out(await allow(a));
  else if (cmd === 'burst') out({ results: await Promise.all(Array.from({ length: Number(a) }, (_, i) => allow(b + i))) });
  else if (cmd === 'sleep') { await new Promise((r) => setTimeout(r, Number(a))); out({ slept: true }); }
  else if (cmd === 'blockuntil') { out({ blocking: true }); while (!fs.existsSync(a)) {} out(await allow(b)); }
  else if (cmd === 'hammer') { // hammer USERS ATTEMPTS CONCURRENCY: allowed per user
    const users = Array.from({ length: Number(a) }, (_, i) => 'viewer' + String(i).padStart(2, '0'));
    const jobs = []; for (let k = 0; k < Number(b); k++) jobs.push(...users);
    const allowed = Object.fromEntries(users.map((u) => [u, 0])); const errors = []; let degraded = 0;
    await Promise.all(Array.from({ length: Number(line.split(' ')[3]) }, async () => {
      for (let u; (u = jobs.pop()) !== undefined;) {
        try { const d = await fg.allow(u); allowed[u] += d.allowed; degraded += d.degraded; } catch (e) { errors.push(e.message); }
      }
    }));
    out({ allowed, errors: errors.slice(0, 5), degraded });
  }
  else if (cmd === 'quit') break;
}
fg.close();
`

type nodeBot struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
	errb  *strings.Builder
}

func startNodeBot(t *testing.T, url string) *nodeBot {
	t.Helper()
	node := needNode(t)
	index, err := filepath.Abs(filepath.Join(nodeClientDir, "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "--input-type=module", "-e", nodeDriver)
	cmd.Env = nodeEnv("FLOODGATE_TEST_URL="+url, "FG_INDEX=file://"+index)
	b := &nodeBot{t: t, cmd: cmd, errb: &strings.Builder{}}
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = b.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	b.lines = bufio.NewScanner(stdout)
	b.lines.Buffer(make([]byte, 1<<20), 1<<20)
	b.read(nil)
	return b
}

// send writes a command; read takes its JSON answer.
func (b *nodeBot) send(cmd string) { fmt.Fprintln(b.stdin, cmd) }

func (b *nodeBot) read(v any) {
	b.t.Helper()
	if !b.lines.Scan() {
		b.t.Fatalf("node bot stopped: %v\n%s", b.lines.Err(), b.errb.String())
	}
	if v != nil {
		if err := json.Unmarshal(b.lines.Bytes(), v); err != nil {
			b.t.Fatalf("node bot printed %q: %v", b.lines.Text(), err)
		}
	}
}

type nodeAllow struct {
	OK      bool   `json:"ok"`
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason"`
	Error   string `json:"error"`
}

func (b *nodeBot) allow(user string) nodeAllow {
	b.t.Helper()
	b.send("allow " + user)
	var r nodeAllow
	b.read(&r)
	return r
}

// allowBlocked asks for user's decision from a blocked event loop: the
// bot blocks, meanwhile runs (a restart, an idle close), then the loop is
// released and makes the call.
func (b *nodeBot) allowBlocked(user string, meanwhile func()) nodeAllow {
	b.t.Helper()
	flag := filepath.Join(b.t.TempDir(), "go")
	b.send("blockuntil " + flag + " " + user)
	b.read(nil)
	meanwhile()
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		b.t.Fatal(err)
	}
	var r nodeAllow
	b.read(&r)
	return r
}

func wantEntries(t *testing.T, lim *limiter.Limiter, user string, want int) {
	t.Helper()
	st, err := lim.Peek(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != want {
		t.Errorf("%s: counted %d times, want exactly %d", user, st.Entries, want)
	}
}

// TestNodeRestartCountsOnce: one Node client, the sidecar restarted between
// two of its calls (SIGTERM, then SIGKILL; the second time while the bot's
// event loop is blocked, so the server's close sits unread when the call
// starts). Every call after a restart succeeds, and each user's count rose
// by exactly one per call.
func TestNodeRestartCountsOnce(t *testing.T) {
	skipIfShort(t) // -short: the fast tier keeps a quicker test of this area
	needNode(t)
	env, lim := countingSetup(t, 100)
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startServeOn(t, addr, env)
	bot := startNodeBot(t, srv.URL)

	restart := func(kill bool) {
		t.Helper()
		if kill {
			_ = srv.cmd.Process.Kill()
			<-srv.exited
		} else if err := srv.Stop(); err != nil {
			t.Fatalf("stop: %v\n%s", err, srv.Output())
		}
		srv = startServeOn(t, addr, env)
	}
	// Several pooled connections, all made stale by each restart.
	burst := func(prefix string) {
		t.Helper()
		bot.send("burst 5 " + prefix)
		var r struct{ Results []nodeAllow }
		bot.read(&r)
		for i, a := range r.Results {
			if !a.OK || !a.Allowed {
				t.Fatalf("burst %s%d: %+v", prefix, i, a)
			}
		}
	}

	for round, kill := range []bool{false, true} {
		user := fmt.Sprintf("restart%d", round)
		burst(user + "-b")
		if a := bot.allow(user); !a.OK || !a.Allowed {
			t.Fatalf("round %d, first call: %+v", round, a)
		}
		restart(kill)
		if a := bot.allow(user); !a.OK || !a.Allowed {
			t.Fatalf("round %d, call after the restart: %+v (want success)", round, a)
		}
		wantEntries(t, lim, user, 2)
		for i := 0; i < 5; i++ {
			wantEntries(t, lim, fmt.Sprintf("%s-b%d", user, i), 1)
		}
	}

	// Restarted while the bot is busy: the close arrives while its event
	// loop cannot read it.
	burst("blocked-b")
	a := bot.allowBlocked("blocked", func() {
		restart(false)
		time.Sleep(100 * time.Millisecond) // the server's close has reached the bot's socket
	})
	if !a.OK || !a.Allowed {
		t.Fatalf("call from a blocked loop after a restart: %+v (want success)", a)
	}
	wantEntries(t, lim, "blocked", 1)
}

// idleProxy stands in front of a server and closes each client connection
// that stays idle (no request outstanding) for idle, or that the server
// closed. It counts the connections it accepted.
type idleProxy struct {
	ln    net.Listener
	conns atomic.Int64
	wg    sync.WaitGroup
}

func startIdleProxy(t *testing.T, upstream string, idle time.Duration) *idleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &idleProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(c, upstream, idle) }()
		}
	}()
	return p
}

func (p *idleProxy) serve(c net.Conn, upstream string, idle time.Duration) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	var last atomic.Int64 // unix nanos of the last answer byte, or 0 while a request is outstanding
	last.Store(time.Now().UnixNano())
	done := make(chan struct{}, 2)
	go func() { // client -> server
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				last.Store(0)
				if _, werr := u.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	go func() { // server -> client
		buf := make([]byte, 32<<10)
		for {
			n, err := u.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
				last.Store(time.Now().UnixNano())
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	tick := time.NewTicker(idle / 10)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if l := last.Load(); l != 0 && time.Since(time.Unix(0, l)) > idle {
				return // close both, as a server's idle timeout does
			}
		}
	}
}

// TestNodeIdleTimeout: the server closes kept-alive connections after
// 200ms idle (FLOODGATE_HTTP_IDLE_TIMEOUT); the bot pauses longer between
// calls (once with its loop free, once blocked). Every call succeeds, each
// counted exactly once, on a new connection each time (counted by a proxy
// whose own timeout is out of reach).
func TestNodeIdleTimeout(t *testing.T) {
	skipIfShort(t) // -short keeps TestNodeRestartCountsOnce
	needNode(t)
	env, lim := countingSetup(t, 100)
	env["FLOODGATE_HTTP_IDLE_TIMEOUT"] = "200ms"
	srv := startServeProc(t, env)
	proxy := startIdleProxy(t, strings.TrimPrefix(srv.URL, "http://"), time.Hour)
	bot := startNodeBot(t, "http://"+proxy.ln.Addr().String())

	if a := bot.allow("idle"); !a.OK || !a.Allowed {
		t.Fatalf("first call: %+v", a)
	}
	bot.send("sleep 600")
	bot.read(nil)
	if a := bot.allow("idle"); !a.OK || !a.Allowed {
		t.Fatalf("call after the server closed the idle connection: %+v", a)
	}
	a := bot.allowBlocked("idle", func() {
		time.Sleep(600 * time.Millisecond) // the proxy closes the connection while the loop is blocked
	})
	if !a.OK || !a.Allowed {
		t.Fatalf("call from a blocked loop after an idle close: %+v", a)
	}
	wantEntries(t, lim, "idle", 3)
	if n := proxy.conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3: one per call, each closed by the idle timeout", n)
	}
}

// TestNodeExampleBot runs clients/node/example.js against a real server:
// every message is answered, held back by a named limit, or an LLM failure,
// and some are answered.
func TestNodeExampleBot(t *testing.T) {
	node := needNode(t)
	srv, token := startClientServe(t, nil)
	const messages = 100
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "example.js")
	cmd.Dir = nodeClientDir
	cmd.Env = nodeEnv("FLOODGATE_URL="+srv.URL, "FLOODGATE_HTTP_TOKEN="+token,
		fmt.Sprintf("BOT_MESSAGES=%d", messages), "BOT_LLM_MS=10")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("example.js: %v\n%s", err, out)
	}
	wantExampleTally(t, "example.js", out, messages)
}
