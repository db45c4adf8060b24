package integration_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// The Python client (clients/python/floodgate.py) against a real
// `floodgate serve` on a real Redis: its own unit tests, and a Python
// replica sharing users with a Go replica that uses the library directly.

const pyClientDir = "../clients/python"

// pyRedisTimeout is generous: these tests check counting and the HTTP
// contract, not outages, and a loaded CI machine must not turn a slow Redis
// reply into a degraded decision.
const pyRedisTimeout = 5 * time.Second

// needPython returns python3's path; it skips without one, except under CI
// (.ci/run installs it), where it fails.
func needPython(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err == nil {
		return py
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set but python3 is not on PATH (.ci/run installs it)")
	}
	t.Skip("python3 is not on PATH")
	return ""
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestPythonClientUnittest runs clients/python's `python3 -m unittest -v`
// with FLOODGATE_TEST_URL pointing at a real server (with a token, so auth
// is exercised), and checks that the live tests ran rather than skipped.
func TestPythonClientUnittest(t *testing.T) {
	skipIfShort(t) // -short keeps TestPythonAndGoReplicasShareLimits
	py := needPython(t)
	rdb := client(t)
	token := randomHex(t, 16)
	// Timing margins for a loaded machine: the backoff stays open 1s, the
	// test bucket refills one token every 2s.
	srv := startServeProc(t, map[string]string{
		"FLOODGATE_KEY_PREFIX":           uniquePrefix(t, rdb),
		"FLOODGATE_HTTP_TOKEN":           token,
		"FLOODGATE_LLM_RETRY_DELAY":      "1s",
		"FLOODGATE_USER_COOLDOWN":        "10s",
		"FLOODGATE_API_RATES":            "wikipedia=1,igdb=4,pytest=0.5",
		"FLOODGATE_MAX_CONCURRENT_USERS": "7",
		"FLOODGATE_REDIS_TIMEOUT":        pyRedisTimeout.String(),
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-m", "unittest", "-v")
	cmd.Dir = pyClientDir
	cmd.Env = append(os.Environ(), "FLOODGATE_TEST_URL="+srv.URL, "FLOODGATE_TEST_TOKEN="+token,
		"FLOODGATE_TEST_BUCKET=pytest", "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest -v: %v\n%s\nserver output:\n%s", err, out, srv.Output())
	}
	live := regexp.MustCompile(`(?m)^(test_\w+) \(test_floodgate\.LiveServerTest[^)]*\)[^\n]*\.\.\. (\w+)`)
	ran := 0
	for _, m := range live.FindAllStringSubmatch(string(out), -1) {
		if m[2] != "ok" {
			t.Errorf("live test %s: %s (want ok)", m[1], m[2])
		}
		ran++
	}
	if ran < 10 {
		t.Fatalf("only %d live tests ran against the server; output:\n%s", ran, out)
	}
	t.Logf("%d live Python tests passed against %s", ran, srv.URL)
}

// pyMixedReplica is a bot replica in Python: after "go" on stdin, THREADS
// threads make ATTEMPTS requests for each of USERS users through the
// server and it prints {"allowed": {user: n}, "errors": [...], "degraded": n}.
const pyMixedReplica = `
import json, os, sys, threading
import floodgate

fg = floodgate.Client(os.environ["FLOODGATE_TEST_URL"], timeout=10.0)
users = ["viewer%02d" % i for i in range(int(os.environ["USERS"]))]
jobs = [u for _ in range(int(os.environ["ATTEMPTS"])) for u in users]
allowed = {u: 0 for u in users}
errors, degraded = [], [0]
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
            allowed[u] += d.allowed
            degraded[0] += d.degraded

threads = [threading.Thread(target=work) for _ in range(int(os.environ["THREADS"]))]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"allowed": allowed, "errors": errors[:5], "degraded": degraded[0]}))
`

// TestPythonAndGoReplicasShareLimits: a Go replica (library, direct to
// Redis) and a Python replica (floodgate.py, through the server) hammer the
// same 50 users at the same time with cooldown off and a limit of 20. Each
// side tries 15 times per user, so each alone would get 15; together every
// user gets exactly 20.
func TestPythonAndGoReplicasShareLimits(t *testing.T) {
	py := needPython(t)
	rdb := client(t)
	const users, limit, attempts = 50, 20, 15
	prefix := uniquePrefix(t, rdb)
	srv := startServeProc(t, map[string]string{
		"FLOODGATE_KEY_PREFIX":                 prefix,
		"FLOODGATE_USER_COOLDOWN":              "0",
		"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR": fmt.Sprint(limit),
		"FLOODGATE_REDIS_TIMEOUT":              pyRedisTimeout.String(),
	})
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.UserCooldown = 0
	cfg.MaxRequestsPerUserHour = limit
	cfg.RedisTimeout = pyRedisTimeout
	lim, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pyMixedReplica)
	abs, err := filepath.Abs(pyClientDir)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "PYTHONPATH="+abs, "PYTHONDONTWRITEBYTECODE=1", "FLOODGATE_TEST_URL="+srv.URL,
		fmt.Sprintf("USERS=%d", users), fmt.Sprintf("ATTEMPTS=%d", attempts), "THREADS=16")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("python replica did not get ready: %q %v\n%s", lines.Text(), lines.Err(), stderr.String())
	}

	// Start both sides together. The Go replica paces itself a little so
	// that its requests interleave with the slower Python ones instead of
	// finishing before Python's first.
	io.WriteString(stdin, "go\n")
	goAllowed := make([]atomic.Int64, users)
	var goErrs atomic.Int64
	jobs := make(chan int, users*attempts)
	for a := 0; a < attempts; a++ {
		for u := users - 1; u >= 0; u-- { // Python pops from the other end
			jobs <- u
		}
	}
	close(jobs)
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range jobs {
				d, err := lim.Allow(ctx, fmt.Sprintf("viewer%02d", u))
				if err != nil || d.Degraded {
					goErrs.Add(1)
					continue
				}
				if d.Allowed {
					goAllowed[u].Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()

	var res struct {
		Allowed  map[string]int `json:"allowed"`
		Errors   []string       `json:"errors"`
		Degraded int            `json:"degraded"`
	}
	if !lines.Scan() {
		t.Fatalf("python replica printed no result: %v\n%s", lines.Err(), stderr.String())
	}
	if err := json.Unmarshal(lines.Bytes(), &res); err != nil {
		t.Fatalf("python replica result %q: %v", lines.Text(), err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python replica: %v\n%s", err, stderr.String())
	}
	if goErrs.Load() != 0 || len(res.Errors) != 0 || res.Degraded != 0 {
		t.Fatalf("errors or degraded decisions: go %d, python %v (+%d degraded)", goErrs.Load(), res.Errors, res.Degraded)
	}
	var goTotal, pyTotal int
	for u := 0; u < users; u++ {
		g, p := int(goAllowed[u].Load()), res.Allowed[fmt.Sprintf("viewer%02d", u)]
		goTotal += g
		pyTotal += p
		if g+p != limit {
			t.Errorf("viewer%02d: %d allowed (Go %d + Python %d), want exactly %d", u, g+p, g, p, limit)
		}
	}
	if len(res.Allowed) != users {
		t.Errorf("python replica reported %d users, want %d", len(res.Allowed), users)
	}
	t.Logf("allowed: Go %d, Python %d, total %d over %d users (limit %d each)", goTotal, pyTotal, goTotal+pyTotal, users, limit)
}

// TestPythonExampleBot runs clients/python/example_bot.py (the compose
// file's bot-py) against a real server: every message is answered, held
// back by a named limit, or an LLM failure, and some are answered.
func TestPythonExampleBot(t *testing.T) {
	py := needPython(t)
	rdb := client(t)
	token := randomHex(t, 16)
	srv := startServeProc(t, map[string]string{
		"FLOODGATE_KEY_PREFIX":    uniquePrefix(t, rdb),
		"FLOODGATE_HTTP_TOKEN":    token,
		"FLOODGATE_REDIS_TIMEOUT": pyRedisTimeout.String(),
	})
	const messages = 100
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "example_bot.py")
	cmd.Dir = pyClientDir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "FLOODGATE_URL="+srv.URL, "FLOODGATE_HTTP_TOKEN="+token,
		fmt.Sprintf("BOT_MESSAGES=%d", messages), "BOT_LLM_SECONDS=0.01")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("example_bot.py: %v\n%s", err, out)
	}
	var tally map[string]int
	if err := json.Unmarshal(out, &tally); err != nil {
		t.Fatalf("example_bot.py printed %q: %v", out, err)
	}
	total := 0
	for k, n := range tally {
		if k != "answered" && k != "llm_failed" && !strings.HasPrefix(k, "held_") {
			t.Errorf("unexpected outcome %q in %v", k, tally)
		}
		total += n
	}
	if total != messages || tally["answered"] == 0 || tally["held_cooldown"] == 0 {
		t.Fatalf("outcomes %v: want %d in total, some answered and some held by the cooldown", tally, messages)
	}
	t.Logf("example_bot.py: %v", tally)
}
