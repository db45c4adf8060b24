package configfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// The original bot's rate_limiting: block, as written there, reads into
// the limiter's Config; the bot's other sections are ignored.
func TestConfigFileSeedBlock(t *testing.T) {
	base := limiter.DefaultConfig()
	base.UserCooldown = time.Second // the file must win
	cfg, err := Read("testdata/config.yaml", base)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UserCooldown != 10*time.Second || cfg.MaxRequestsPerUserHour != 20 || cfg.MaxConcurrentUsers != 7 ||
		cfg.MaxIdleTime != time.Hour || cfg.LLMRetryDelay != 5*time.Second || cfg.LLMBackoffMultiplier != 2 ||
		cfg.LLMBackoffMax != 300*time.Second {
		t.Fatalf("config: %+v", cfg)
	}
	if got := cfg.APIRates.String(); got != "igdb=4/1,tmdb=0.5/1,wikipedia=1/1" {
		t.Fatalf("APIs: %q", got)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", "empty file"},
		{"rate_limiting: [1, 2]", "not a mapping"},
		{"other: 1", "no rate_limiting: block"},
		{"- a", "top level is not a mapping"},
		{"rate_limiting:\n  user_cooldwn: 10", `unknown key rate_limiting.user_cooldwn (known: cleanup_interval,`},
		{"rate_limiting:\n  _rate_limit: 1", "unknown key rate_limiting._rate_limit"},
		{"rate_limiting:\n  user_cooldown: soon", `rate_limiting.user_cooldown: "soon" is neither seconds nor a duration`},
		{"rate_limiting:\n  user_cooldown: [1]", "must be a single value"},
		{"rate_limiting:\n  user_cooldown:", "must be a single value"},
		{"rate_limiting:\n  user_cooldown: 1e300", "out of range"},
		{"rate_limiting:\n  max_requests_per_user_hour: 2.5", `"2.5" is not a whole number`},
		{"rate_limiting:\n  max_requests_per_user_hour: \"20\"", `"20" is not a whole number`},
		{"rate_limiting:\n  igdb_rate_limit: fast", `rate_limiting.igdb_rate_limit: "fast" is not a number`},
		{"rate_limiting:\n  igdb_rate_limit: .nan", "is not a number"},
		{"rate_limiting:\n  llm_backoff_multiplier: x", "is not a number"},
		{"rate_limiting:\n  user_cooldown: 1\n  user_cooldown: 2", "given twice"},
		{"rate_limiting: {a: [", "not YAML"},
	} {
		_, err := Parse([]byte(tc.yaml), limiter.DefaultConfig())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// Durations take seconds or Go durations; Floodgate's own keys are read
// too; a value the limiter rejects fails after the environment applies,
// naming the field.
func TestConfigFileFloodgateKeys(t *testing.T) {
	cfg, err := Parse([]byte("rate_limiting:\n  user_cooldown: 1.5\n  user_window: 10m\n  slot_lease: 45\n  key_prefix: \"bot1:\"\n  llm_backoff_jitter: 0.2\n"), limiter.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UserCooldown != 1500*time.Millisecond || cfg.UserWindow != 10*time.Minute || cfg.SlotLease != 45*time.Second ||
		cfg.KeyPrefix != "bot1:" || cfg.LLMBackoffJitter != 0.2 {
		t.Fatalf("%+v", cfg)
	}
	// Rates absent: the defaults stay.
	if cfg.APIRates.String() != limiter.DefaultConfig().APIRates.String() {
		t.Fatalf("APIs: %v", cfg.APIRates)
	}
}

// max_tokens_per_user_hour sets the token budget (limiter.Budget).
func TestConfigFileTokenBudget(t *testing.T) {
	cfg, err := Parse([]byte("rate_limiting:\n  max_tokens_per_user_hour: 20000\n"), limiter.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UserTokenBudget != 20000 {
		t.Fatalf("UserTokenBudget %d, want 20000", cfg.UserTokenBudget)
	}
}

// Every duration, whole-number, float and string setting of Config has a
// key, spelt as its variable in lower case: the newer ones too.
func TestConfigFileNewerKeys(t *testing.T) {
	cfg, err := Parse([]byte("rate_limiting:\n  redis_wait_replicas: 1\n  redis_wait_timeout: 250ms\n  user_token_window: 30m\n"), limiter.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WaitReplicas != 1 || cfg.WaitTimeout != 250*time.Millisecond || cfg.UserTokenWindow != 30*time.Minute {
		t.Fatalf("%+v", cfg)
	}
	for _, bad := range []string{"redis_url: redis://x", "user_token_budget: 5", "redis_wait_replicas: 1.5"} {
		if _, err := Parse([]byte("rate_limiting:\n  "+bad+"\n"), limiter.DefaultConfig()); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// Read's errors name the package, the file and, for what is in it, the
// line; a file past maxConfigFile is refused unread.
func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, maxConfigFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rate_limiting:\n  user_cooldwn: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "missing.yaml"): "configfile: open " + filepath.Join(dir, "missing.yaml") + ": no such file",
		big:                                "configfile: " + big + ": larger than 1048576 bytes",
		bad:                                "configfile: " + bad + ": line 2: unknown key rate_limiting.user_cooldwn",
	} {
		if _, err := Read(path, limiter.DefaultConfig()); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
}
