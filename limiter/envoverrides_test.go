package limiter

import (
	"strings"
	"testing"
	"time"
)

// EnvOverrides: variables that are set win over base, the rest of base
// stays, base's map is not written, and the result is validated.
func TestEnvOverrides(t *testing.T) {
	base := DefaultConfig()
	base.UserCooldown = 3 * time.Second
	base.MaxConcurrentUsers = 9
	base.APIRates = APIRates{"wiki": {PerSecond: 2, Burst: 1}}
	got, err := envOverrides(base, map[string]string{
		"FLOODGATE_MAX_CONCURRENT_USERS": "4",
		"FLOODGATE_API_RATES":            "igdb=4/2",
		"REDIS_URL":                      "redis://h:1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.UserCooldown != 3*time.Second || got.MaxConcurrentUsers != 4 || got.RedisURL != "redis://h:1" {
		t.Fatalf("got cooldown %v, slots %d, url %q", got.UserCooldown, got.MaxConcurrentUsers, got.RedisURL)
	}
	if got.APIRates.String() != "igdb=4/2" || base.APIRates.String() != "wiki=2/1" {
		t.Fatalf("rates %q, base now %q", got.APIRates, base.APIRates)
	}

	// base's Redis wins over REDIS_URL, FLOODGATE_REDIS_URL over both.
	base.RedisURL = "redis://file:1"
	if got, _ := envOverrides(base, map[string]string{"REDIS_URL": "redis://env:1"}); got.RedisURL != "redis://file:1" {
		t.Fatalf("REDIS_URL replaced base's URL: %q", got.RedisURL)
	}
	if got, _ := envOverrides(base, map[string]string{"FLOODGATE_REDIS_URL": "redis://fg:1"}); got.RedisURL != "redis://fg:1" {
		t.Fatalf("FLOODGATE_REDIS_URL lost: %q", got.RedisURL)
	}

	// An invalid base is an error naming the field; an invalid variable
	// names the variable.
	bad := DefaultConfig()
	bad.MaxConcurrentUsers = -1
	if _, err := envOverrides(bad, map[string]string{}); err == nil || !strings.Contains(err.Error(), "MaxConcurrentUsers") {
		t.Fatalf("invalid base: %v", err)
	}
	if _, err := envOverrides(base, map[string]string{"FLOODGATE_SLOT_LEASE": "soon"}); err == nil || !strings.Contains(err.Error(), "FLOODGATE_SLOT_LEASE") {
		t.Fatalf("invalid variable: %v", err)
	}
}
