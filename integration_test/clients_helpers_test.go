package integration_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// Helpers shared by the Python and Node client tests (python_*_test.go,
// node_test.go, clients_exact_test.go, serve_tls_test.go).

// clientRedisTimeout is generous: the client tests check counting and the
// HTTP contract, not outages, and a loaded CI machine must not turn a slow
// Redis reply into a degraded decision.
const clientRedisTimeout = 5 * time.Second

// needNode returns node's path; see needTool.
func needNode(t testing.TB) string {
	t.Helper()
	return needTool(t, "node", "nodejs")
}

// needPython returns python3's path; see needTool.
func needPython(t testing.TB) string {
	t.Helper()
	return needTool(t, "python3", "python3")
}

// randomHex is n random bytes in hex: a fresh FLOODGATE_HTTP_TOKEN.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startClientServe runs `floodgate serve` for a client test: its own key
// prefix, a fresh token (returned), clientRedisTimeout, then env.
func startClientServe(t testing.TB, env map[string]string) (*serveProc, string) {
	t.Helper()
	token := randomHex(t, 16)
	all := map[string]string{
		"FLOODGATE_KEY_PREFIX":    uniquePrefix(t, client(t)),
		"FLOODGATE_HTTP_TOKEN":    token,
		"FLOODGATE_REDIS_TIMEOUT": clientRedisTimeout.String(),
	}
	for k, v := range env {
		all[k] = v
	}
	return startServeProc(t, all), token
}

// startSuiteServe starts the server a client's own test suite runs
// against, with timing margins for a loaded machine: the backoff stays
// open 1s, and each of buckets refills one token every 2s. It returns the
// server, its token, and a test CA with a server certificate
// (redisproc.GenerateTLS, in a directory of their own) for the suite's
// TLS tests.
func startSuiteServe(t testing.TB, buckets ...string) (*serveProc, string, *redisproc.TLSFiles) {
	t.Helper()
	rates := "wikipedia=1,igdb=4"
	for _, b := range buckets {
		rates += "," + b + "=0.5"
	}
	srv, token := startClientServe(t, map[string]string{
		"FLOODGATE_LLM_RETRY_DELAY":      "1s",
		"FLOODGATE_USER_COOLDOWN":        "10s",
		"FLOODGATE_API_RATES":            rates,
		"FLOODGATE_MAX_CONCURRENT_USERS": "7",
		"FLOODGATE_USER_TOKEN_BUDGET":    "20000",
	})
	files, err := redisproc.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return srv, token, files
}

// countingSetup is a server config with no cooldown and limit requests
// per user per hour on a key prefix of the test's own, and a library
// Limiter on the same keys: a replica beside the servers, and the counts.
func countingSetup(t testing.TB, limit int) (map[string]string, *limiter.Limiter) {
	t.Helper()
	rdb, prefix := prefixedClient(t)
	env := map[string]string{
		"FLOODGATE_KEY_PREFIX":                 prefix,
		"FLOODGATE_USER_COOLDOWN":              "0",
		"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR": strconv.Itoa(limit),
		"FLOODGATE_REDIS_TIMEOUT":              clientRedisTimeout.String(),
	}
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.UserCooldown = 0
	cfg.MaxRequestsPerUserHour = limit
	cfg.RedisTimeout = clientRedisTimeout
	return env, newLimiter(t, rdb, cfg)
}

// wantExampleTally checks what an example bot printed (a JSON tally of
// outcomes): every one of the messages answered, held back by a named
// limit, or an LLM failure, with some answered and some held by the
// cooldown.
func wantExampleTally(t testing.TB, bot string, out []byte, messages int) {
	t.Helper()
	var tally map[string]int
	if err := json.Unmarshal(out, &tally); err != nil {
		t.Fatalf("%s printed %q: %v", bot, out, err)
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
	t.Logf("%s: %v", bot, tally)
}

// outputJSON runs a client script, cmd, with env added to its environment
// and decodes what it prints, as JSON, into a new T; what names the script
// in a failure.
func outputJSON[T any](t testing.TB, cmd *exec.Cmd, env map[string]string, what string) T {
	t.Helper()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var res T
	out, err := cmd.Output()
	if err == nil {
		err = json.Unmarshal(out, &res)
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	return res
}
