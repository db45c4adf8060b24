package integration_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestConfigShowsEvictionRisk: floodgate config --redis reads Redis's
// maxmemory-policy and says whether it can forget limits, as /readyz does.
func TestConfigShowsEvictionRisk(t *testing.T) {
	config := func(redisArgs ...string) string {
		cmd := exec.Command(commandBin(t, "floodgate"), "config", "--redis")
		cmd.Env = append(os.Environ(), "FLOODGATE_REDIS_URL=redis://"+startRedis(t, redisArgs...).Addr)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("config --redis on %v: %v\n%s", redisArgs, err, out)
		}
		return string(out)
	}
	const risk = "eviction risk                            "
	if out := config("--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"); !strings.Contains(out, risk+"UNSAFE: Redis has maxmemory-policy allkeys-lru") {
		t.Errorf("allkeys-lru with maxmemory:\n%s", out)
	}
	if out := config("--maxmemory-policy", "noeviction"); !strings.Contains(out, risk+"safe") || !strings.Contains(out, "maxmemory-policy                         noeviction") {
		t.Errorf("noeviction:\n%s", out)
	}
}
