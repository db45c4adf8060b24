package integration_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestLoadgenWarnsOfEviction: docs/reliability.md says cmd/loadgen prints
// the eviction warning before it measures. On a Redis whose
// maxmemory-policy can evict Floodgate's keys, its stderr names the policy
// and the fix before the first figure.
func TestLoadgenWarnsOfEviction(t *testing.T) {
	skipIfShort(t)
	srv := startRedis(t, "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru")
	bin := commandBin(t, "loadgen")
	stdout, stderr, code := runLoadgen(t, bin, "--users", "100", "--tests", "cooldown",
		"--redis-url", fmt.Sprintf("redis://%s", srv.Addr), "--idle", "300ms", "--lookups", "100", "--duration", "50ms")
	if code != 0 {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	warn := strings.Index(stderr, "WARNING")
	if warn < 0 || !strings.Contains(stderr[warn:], "allkeys-lru") || !strings.Contains(stderr[warn:], "noeviction") {
		t.Fatalf("no eviction warning naming allkeys-lru and the fix on stderr:\n%s", stderr)
	}
	if !strings.Contains(stdout, "B/user") {
		t.Errorf("loadgen measured nothing after warning:\n%s", stdout)
	}
}
