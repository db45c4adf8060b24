package main

import (
	"testing"

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
