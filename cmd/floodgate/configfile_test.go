package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/limiter"
)

// The original bot's rate_limiting: block, as written there, reads into
// the limiter's Config; the bot's other sections are ignored.
func TestConfigFileSeedBlock(t *testing.T) {
	base := limiter.DefaultConfig()
	base.UserCooldown = time.Second // the file must win
	cfg, err := readConfigFile("testdata/config.yaml", base)
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
		_, err := parseConfigFile([]byte(tc.yaml), limiter.DefaultConfig())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// Durations take seconds or Go durations; Floodgate's own keys are read
// too; a value the limiter rejects fails after the environment applies,
// naming the field.
func TestConfigFileFloodgateKeys(t *testing.T) {
	cfg, err := parseConfigFile([]byte("rate_limiting:\n  user_cooldown: 1.5\n  user_window: 10m\n  slot_lease: 45\n  key_prefix: \"bot1:\"\n  llm_backoff_jitter: 0.2\n"), limiter.DefaultConfig())
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

// The environment overrides the file; `floodgate config` prints the
// result with the password hidden.
func TestConfigCommandEnvOverridesFile(t *testing.T) {
	t.Setenv("FLOODGATE_USER_COOLDOWN", "3s")
	t.Setenv("FLOODGATE_REDIS_URL", "redis://:hunter2secret@redis.example:6379/0")
	t.Setenv("FLOODGATE_HTTP_TOKEN", "tok-0123456789abcdef")
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"config", "--config", "testdata/config.yaml"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"FLOODGATE_USER_COOLDOWN                  3s",
		"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR     20",
		"FLOODGATE_API_RATES                      igdb=4/1,tmdb=0.5/1,wikipedia=1/1",
		"redis.example:6379",
		"FLOODGATE_HTTP_TOKEN                     (set, hidden)",
		"cleanup_interval is not needed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("config output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "hunter2secret") || strings.Contains(text, "tok-0123456789abcdef") {
		t.Fatalf("config output shows a secret:\n%s", text)
	}
}

func TestConfigCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rate_limiting:\n  user_cooldwn: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("rate_limiting:\n  max_requests_per_user_hour: 500\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "--config", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"config", "--config", bad}, `unknown key rate_limiting.user_cooldwn`},
		{[]string{"config", "--config", invalid}, "MaxRequestsPerUserHour"},
		{[]string{"config", "extra"}, `config takes no arguments, got ["extra"]`},
		{[]string{"serve", "extra"}, `serve takes no arguments, got ["extra"]`},
	} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), tc.args, &out, &errOut)
		if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (exit %d), want %q", tc.args, err, cli.ExitCode(err), tc.want)
		}
	}
	t.Setenv("FLOODGATE_SLOT_LEASE", "soon")
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"config"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "FLOODGATE_SLOT_LEASE") {
		t.Fatalf("bad variable: %v", err)
	}
}
