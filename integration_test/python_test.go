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
)

// The Python client (clients/python/floodgate.py) against a real
// `floodgate serve` on a real Redis: its own unit tests, and a Python
// replica sharing users with a Go replica that uses the library directly.

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
