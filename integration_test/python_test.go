package integration_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// The Python client (clients/python/floodgate.py) against a real
// `floodgate serve` on a real Redis: its own unit tests, from the source
// tree and installed, a Python replica sharing users with a Go replica
// that uses the library directly, and connections the server closed.

const pyClientDir = "../clients/python"

// TestPythonClientUnittest runs clients/python's `python3 -m unittest -v`
// with FLOODGATE_TEST_URL pointing at a real server (with a token, so auth
// is exercised), and checks that the live tests ran rather than skipped.
func TestPythonClientUnittest(t *testing.T) {
	skipIfShort(t) // -short keeps TestClientsAndGoReplicaShareLimits
	py := needPython(t)
	srv, token, tlsFiles := startSuiteServe(t, "pytest", "pyslow")
	tlsDir := filepath.Dir(tlsFiles.CAFile) // for the client's TLS tests (test_transport.py)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "-v")
	cmd.Dir = pyClientDir
	cmd.Env = append(os.Environ(), "FLOODGATE_TEST_URL="+srv.URL, "FLOODGATE_TEST_TOKEN="+token,
		"FLOODGATE_TEST_BUCKET=pytest", "FLOODGATE_TEST_SLOW_BUCKET=pyslow", "FLOODGATE_TEST_TLS_DIR="+tlsDir,
		"PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest -v: %v\n%s\nserver output:\n%s", err, out, srv.Output())
	}
	live := regexp.MustCompile(`(?m)^(test_\w+) \(test_floodgate\.(?:Async)?LiveServerTest[^)]*\)[^\n]*\.\.\. (\w+)`)
	ran := 0
	for _, m := range live.FindAllStringSubmatch(string(out), -1) {
		if m[2] != "ok" {
			t.Errorf("live test %s: %s (want ok)", m[1], m[2])
		}
		ran++
	}
	if ran < 20 {
		t.Fatalf("only %d live tests ran against the server; output:\n%s", ran, out)
	}
	// These must run here, not skip: the recipes against the server, the
	// event loop during a server-side wait, TLS with the test's CA.
	for _, name := range []string{
		`test_twitchio \(test_recipes\.LiveRecipeTest`, `test_discord \(test_recipes\.LiveRecipeTest`,
		`test_twitchapi \(test_recipes\.LiveRecipeTest`, `test_docs_show_every_recipe_verbatim \(test_recipes`,
		`test_other_tasks_go_on_during_a_server_side_wait \(test_floodgate\.AsyncLiveServerTest`,
		`test_ca_file_and_ssl_context \(test_transport\.TLSTest`, `test_ca_file_and_ssl_context \(test_transport\.AsyncTLSTest`,
		`test_unix_socket \(test_transport\.AsyncConnectionTest`,
	} {
		if !regexp.MustCompile(`(?m)^` + name + `[^\n]*\.\.\. ok$`).Match(out) {
			t.Errorf("%s did not run ok; output:\n%s", name, out)
		}
	}
	t.Logf("%d live Python tests passed against %s", ran, srv.URL)
}

// TestPythonClientInstalls: clients/python installs into a fresh venv
// with no package index (pip --no-build-isolation --no-index, Debian's
// python3-venv, python3-setuptools and python3-wheel, as .ci/run
// installs them), and the installed package, not the source tree, passes
// the unit tests and carries its py.typed marker.
func TestPythonClientInstalls(t *testing.T) {
	skipIfShort(t) // -short keeps TestClientsAndGoReplicaShareLimits
	needPython(t)
	const sysPy = "/usr/bin/python3" // Debian's, with venv, setuptools and wheel
	if _, err := os.Stat(sysPy); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set but %s is missing (.ci/run installs python3-venv)", sysPy)
		}
		t.Skip(sysPy + " is missing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	run := func(dir string, env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append([]string{"PIP_NO_INPUT=1", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PYTHONDONTWRITEBYTECODE=1"}, env...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// Build from a copy: pip leaves build/ and *.egg-info next to the sources.
	src := filepath.Join(tmp, "src")
	run("", nil, "cp", "-r", pyClientDir, src)
	venv := filepath.Join(tmp, "venv")
	run("", nil, sysPy, "-m", "venv", "--system-site-packages", venv)
	vpy := filepath.Join(venv, "bin", "python")
	run("", nil, vpy, "-m", "pip", "install", "--no-build-isolation", "--no-index", src)

	// The tests, without the package next to them: they import the installed one.
	tests := filepath.Join(tmp, "tests")
	if err := os.Mkdir(tests, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"test_floodgate.py", "test_transport.py", "harness.py"} {
		run("", nil, "cp", filepath.Join(pyClientDir, f), tests)
	}
	where := run(tests, []string{"PYTHONPATH="}, vpy, "-c",
		"import floodgate, os; d = os.path.dirname(floodgate.__file__); print(d); assert os.path.exists(os.path.join(d, 'py.typed'))")
	if !strings.HasPrefix(strings.TrimSpace(where), venv) {
		t.Fatalf("imported floodgate from %s, want the venv %s", where, venv)
	}
	// A type checker sees the installed package's hints (py.typed): the
	// result types of both clients, and a misspelt field is an error.
	if err := exec.Command(sysPy, "-c", "import mypy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but mypy is missing (.ci/run installs python3-mypy)")
		}
		t.Log("no mypy: the type check is skipped")
	} else {
		check := filepath.Join(tests, "typecheck_me.py")
		if err := os.WriteFile(check, []byte(`import floodgate

async def handler(afg: floodgate.AsyncClient, fg: floodgate.Client) -> None:
    reveal_type(await afg.allow("x"))
    reveal_type(fg.allow_many(["x"]))
    async with afg.slot("llm", "x") as lease:
        reveal_type(lease)
    fg.allow("x").alowed
`), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, vpy, "-m", "mypy", "--no-incremental", "--python-version", "3.9", check)
		cmd.Dir, cmd.Env = tests, append(os.Environ(), "PYTHONPATH=")
		got, _ := cmd.CombinedOutput() // exit 1: the misspelt field
		for _, want := range []string{
			`Revealed type is "floodgate._proto.Decision"`,
			`Revealed type is "builtins.list[floodgate._proto.Decision]"`,
			`Revealed type is "floodgate._async.AsyncLease"`,
			`"Decision" has no attribute "alowed"`,
		} {
			if !strings.Contains(string(got), want) {
				t.Errorf("mypy on the installed package: want %q in\n%s", want, got)
			}
		}
	}
	out := run(tests, []string{"PYTHONPATH="}, vpy, "-m", "unittest", "test_floodgate", "test_transport")
	if !strings.Contains(out, "OK") {
		t.Fatalf("unittest: %s", out)
	}
	t.Logf("installed into %s; unit tests: %s", venv, out[strings.LastIndex(out, "Ran "):])
}

// pyMixedReplica is a bot replica in Python: after "go" on stdin it makes
// ATTEMPTS requests for each of USERS users through the server, with
// THREADS threads sharing a Client, or (TASKS set) TASKS asyncio tasks
// sharing an AsyncClient, and prints {"allowed": {user: n}, "errors":
// [...], "degraded": n}.
const pyMixedReplica = `
import asyncio, json, os, sys, threading
import floodgate

users = ["viewer%02d" % i for i in range(int(os.environ["USERS"]))]
jobs = [u for _ in range(int(os.environ["ATTEMPTS"])) for u in users]
allowed = {u: 0 for u in users}
errors, degraded = [], [0]

def tally(u, d):
    allowed[u] += d.allowed
    degraded[0] += d.degraded

def threads():
    fg = floodgate.Client(os.environ["FLOODGATE_TEST_URL"], timeout=10.0)
    lock = threading.Lock()
    if not fg.ready():
        sys.exit("server not ready")
    print("ready", flush=True)
    sys.stdin.readline()

    def work():
        while True:
            with lock:
                if not jobs:
                    return
                u = jobs.pop()
            try:
                d = fg.allow(u)
            except floodgate.FloodgateError as e:
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                tally(u, d)

    ts = [threading.Thread(target=work) for _ in range(int(os.environ["THREADS"]))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()

async def tasks():
    async with floodgate.AsyncClient(os.environ["FLOODGATE_TEST_URL"], timeout=10.0, max_connections=64) as fg:
        if not await fg.ready():
            sys.exit("server not ready")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def work():
            while jobs:
                u = jobs.pop(0)  # from the front: the threads replica pops from the back
                try:
                    tally(u, await fg.allow(u))
                except floodgate.FloodgateError as e:
                    errors.append(str(e))

        await asyncio.gather(*(work() for _ in range(int(os.environ["TASKS"]))))

if os.environ.get("TASKS"):
    asyncio.run(tasks())
else:
    threads()
print(json.dumps({"allowed": allowed, "errors": errors[:5], "degraded": degraded[0]}))
`

// pyReplica is one running pyMixedReplica.
type pyReplica struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  *bufio.Scanner
	stderr *strings.Builder
}

type pyReplicaResult struct {
	Allowed  map[string]int `json:"allowed"`
	Errors   []string       `json:"errors"`
	Degraded int            `json:"degraded"`
}

func startPyReplica(ctx context.Context, t *testing.T, name, baseURL string, env ...string) *pyReplica {
	t.Helper()
	abs, err := filepath.Abs(pyClientDir)
	if err != nil {
		t.Fatal(err)
	}
	r := &pyReplica{name: name, cmd: exec.CommandContext(ctx, needPython(t), "-c", pyMixedReplica), stderr: &strings.Builder{}}
	r.cmd.Env = append(append(os.Environ(), "PYTHONPATH="+abs, "PYTHONDONTWRITEBYTECODE=1", "FLOODGATE_TEST_URL="+baseURL), env...)
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill(); _ = r.cmd.Wait() })
	r.lines = bufio.NewScanner(stdout)
	r.lines.Buffer(make([]byte, 1<<20), 1<<20)
	if !r.lines.Scan() || r.lines.Text() != "ready" {
		t.Fatalf("%s did not get ready: %q %v\n%s", name, r.lines.Text(), r.lines.Err(), r.stderr.String())
	}
	return r
}

func (r *pyReplica) result(t *testing.T) pyReplicaResult {
	t.Helper()
	var res pyReplicaResult
	if !r.lines.Scan() {
		t.Fatalf("%s printed no result: %v\n%s", r.name, r.lines.Err(), r.stderr.String())
	}
	if err := json.Unmarshal(r.lines.Bytes(), &res); err != nil {
		t.Fatalf("%s result %q: %v", r.name, r.lines.Text(), err)
	}
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s", r.name, err, r.stderr.String())
	}
	return res
}

// TestPythonExampleBotAsync runs clients/python/example_bot_async.py
// (AsyncClient, one task per message) against a real server, as
// TestPythonExampleBot does the sync one.
func TestPythonExampleBotAsync(t *testing.T) {
	runPythonExampleBot(t, "example_bot_async.py")
}

// TestPythonExampleBot runs clients/python/example_bot.py (the compose
// file's bot-py) against a real server: every message is answered, held
// back by a named limit, or an LLM failure, and some are answered.
func TestPythonExampleBot(t *testing.T) {
	skipIfShort(t) // -short: the fast tier keeps a quicker test of this area
	runPythonExampleBot(t, "example_bot.py")
}

func runPythonExampleBot(t *testing.T, script string) {
	py := needPython(t)
	srv, token := startClientServe(t, nil)
	const messages = 100
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script)
	cmd.Dir = pyClientDir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "FLOODGATE_URL="+srv.URL, "FLOODGATE_HTTP_TOKEN="+token,
		fmt.Sprintf("BOT_MESSAGES=%d", messages), "BOT_LLM_SECONDS=0.01")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	wantExampleTally(t, script, out, messages)
}

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

// pyCountingSetup is countingSetup behind a token (returned): the Python
// clients' connection tests send one, so auth is exercised too.
func pyCountingSetup(t *testing.T) (map[string]string, *limiter.Limiter, string) {
	t.Helper()
	needPython(t)
	env, lim := countingSetup(t, 100)
	token := randomHex(t, 16)
	env["FLOODGATE_HTTP_TOKEN"] = token
	return env, lim, token
}

// TestPythonClientsSurviveServerRestart: both clients call allow, the
// sidecar restarts on the same address, both call again: no error, and
// each user's count went up by exactly one per call.
func TestPythonClientsSurviveServerRestart(t *testing.T) {
	skipIfShort(t) // -short keeps TestServeReadinessRedisRestart
	env, lim, token := pyCountingSetup(t)
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
			wantEntries(t, lim, u, round)
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
	env, lim, token := pyCountingSetup(t)
	env["FLOODGATE_HTTP_IDLE_TIMEOUT"] = "200ms"
	srv := startServeProc(t, env)
	proxy := startIdleProxy(t, strings.TrimPrefix(srv.URL, "http://"), time.Hour)
	bot := startPyKeepAliveBot(t, "http://"+proxy.ln.Addr().String(), token, "idle-sync", "idle-async")
	const rounds = 4
	for round := 1; round <= rounds; round++ {
		bot.allow(fmt.Sprintf("round %d", round))
		time.Sleep(700 * time.Millisecond)
	}
	for _, u := range []string{"idle-sync", "idle-async"} {
		wantEntries(t, lim, u, rounds)
	}
	// Each call of each client on a connection of its own: the idle one
	// was closed every time (else the test tested nothing), and no call
	// was sent a second time on another.
	if n := proxy.conns.Load(); n != 2*rounds {
		t.Fatalf("the proxy saw %d connections, want %d (one per call)", n, 2*rounds)
	}
}
