package main

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// max_tokens_per_user_hour sets the token budget (limiter.Budget).
func TestConfigFileTokenBudget(t *testing.T) {
	cfg, err := parseConfigFile([]byte("rate_limiting:\n  max_tokens_per_user_hour: 20000\n"), limiter.DefaultConfig())
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
	cfg, err := parseConfigFile([]byte("rate_limiting:\n  redis_wait_replicas: 1\n  redis_wait_timeout: 250ms\n  user_token_window: 30m\n"), limiter.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WaitReplicas != 1 || cfg.WaitTimeout != 250*time.Millisecond || cfg.UserTokenWindow != 30*time.Minute {
		t.Fatalf("%+v", cfg)
	}
	for _, bad := range []string{"redis_url: redis://x", "user_token_budget: 5", "redis_wait_replicas: 1.5"} {
		if _, err := parseConfigFile([]byte("rate_limiting:\n  "+bad+"\n"), limiter.DefaultConfig()); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
