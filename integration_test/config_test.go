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
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"}, "eviction risk                            UNSAFE: Redis has maxmemory-policy allkeys-lru"},
		{[]string{"--maxmemory-policy", "noeviction"}, "eviction risk                            safe"},
	} {
		srv := startRedis(t, tc.args...)
		cmd := exec.Command(commandBin(t, "floodgate"), "config", "--redis")
		cmd.Env = append(os.Environ(), "FLOODGATE_REDIS_URL=redis://"+srv.Addr)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "maxmemory-policy") {
			t.Errorf("config --redis on %v: %v\n%s\nwant %q", tc.args, err, out, tc.want)
		}
	}
}
