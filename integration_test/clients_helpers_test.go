package integration_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
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
