package limiter

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"defaults", func(*Config) {}},
		{"empty prefix (New fills it in)", func(c *Config) { c.KeyPrefix = "" }},
		{"64-byte prefix", func(c *Config) { c.KeyPrefix = strings.Repeat("p", 64) }},
		{"everything off", func(c *Config) {
			c.UserCooldown, c.MaxRequestsPerUserHour, c.MaxConcurrentUsers, c.LocalCacheSize = 0, 0, 0, 0
			c.APIRates = nil
		}},
		{"no window: UserWindow is not checked", func(c *Config) { c.MaxRequestsPerUserHour, c.UserWindow = 0, -time.Second }},
		{"no window: cooldown longer than the window", func(c *Config) {
			c.MaxRequestsPerUserHour, c.UserCooldown, c.MaxIdleTime = 0, 2*time.Hour, 2*time.Hour
		}},
		{"largest window", func(c *Config) {
			c.MaxRequestsPerUserHour, c.UserWindow, c.MaxIdleTime = MaxWindowRequests, 30*day, 30*day
		}},
		{"cooldown equal to window", func(c *Config) { c.UserCooldown, c.UserWindow, c.MaxIdleTime = day, day, day }},
		{"smallest durations", func(c *Config) {
			c.UserCooldown, c.UserWindow, c.MaxIdleTime = time.Millisecond, time.Millisecond, time.Millisecond
			c.SlotLease, c.LLMRetryDelay, c.LLMBackoffMax, c.LLMProbeLease, c.RedisTimeout = time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond
			c.APIRates = APIRates{"fast": {PerSecond: 1e6, Burst: 1000}} // refills in 1ms
		}},
		{"no default pool: SlotLease may exceed MaxIdleTime", func(c *Config) { c.MaxConcurrentUsers, c.SlotLease = 0, 2*time.Hour }},
		{"multiplier and jitter bounds", func(c *Config) { c.LLMBackoffMultiplier, c.LLMBackoffJitter = 1, 1 }},
		{"multiplier max", func(c *Config) { c.LLMBackoffMultiplier, c.LLMBackoffJitter = 100, 0 }},
		{"retry delay equal to max", func(c *Config) { c.LLMRetryDelay, c.LLMBackoffMax = day, day }},
		{"API bounds", func(c *Config) {
			c.APIRates = APIRates{"a": {PerSecond: 1e6, Burst: 1 << 20}, "b": {PerSecond: 1e-6, Burst: 1}, strings.Repeat("n", MaxNameLen): {PerSecond: 1, Burst: 1}}
			c.MaxIdleTime = 30 * day // b refills in 1e6 s
		}},
		{"slots and cache max", func(c *Config) { c.MaxConcurrentUsers, c.LocalCacheSize = 1<<20, 10_000_000 }},
		{"RedisTimeout max", func(c *Config) { c.RedisTimeout = time.Minute }},
		{"failure modes", func(c *Config) {
			c.OnRedisError, c.BackoffOnRedisError, c.BucketOnRedisError, c.SlotsOnRedisError = FailOpen, FailClosed, FailLocal, FailClosed
		}},
	} {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		field string // "Field (FLOODGATE_VAR)" must be in the error
		says  string // and this
	}{
		{"prefix too long", func(c *Config) { c.KeyPrefix = strings.Repeat("p", 65) }, "KeyPrefix (FLOODGATE_KEY_PREFIX)", "at most 64 bytes, got 65"},
		{"prefix with {", func(c *Config) { c.KeyPrefix = "fg{" }, "KeyPrefix (FLOODGATE_KEY_PREFIX)", "must not contain '{' or '}'"},
		{"prefix with }", func(c *Config) { c.KeyPrefix = "fg}:" }, "KeyPrefix (FLOODGATE_KEY_PREFIX)", "hash tag"},

		{"negative cooldown", func(c *Config) { c.UserCooldown = -time.Second }, "UserCooldown (FLOODGATE_USER_COOLDOWN)", "got -1s"},
		{"cooldown over a day", func(c *Config) { c.UserCooldown, c.MaxIdleTime, c.UserWindow = 25*time.Hour, 30*day, 30*day }, "UserCooldown (FLOODGATE_USER_COOLDOWN)", "between 0s and 24h0m0s"},
		{"cooldown longer than window", func(c *Config) { c.UserCooldown, c.MaxIdleTime = 2*time.Hour, 2*time.Hour }, "UserCooldown (FLOODGATE_USER_COOLDOWN)", "longer than UserWindow"},

		{"negative limit", func(c *Config) { c.MaxRequestsPerUserHour = -1 }, "MaxRequestsPerUserHour (FLOODGATE_MAX_REQUESTS_PER_USER_HOUR)", "got -1"},
		{"limit over the listpack bound", func(c *Config) { c.MaxRequestsPerUserHour = 128 }, "MaxRequestsPerUserHour (FLOODGATE_MAX_REQUESTS_PER_USER_HOUR)", "between 0 and 127"},
		{"huge limit", func(c *Config) { c.MaxRequestsPerUserHour = math.MaxInt }, "MaxRequestsPerUserHour (FLOODGATE_MAX_REQUESTS_PER_USER_HOUR)", "between 0 and 127"},

		{"zero window", func(c *Config) { c.UserWindow, c.UserCooldown = 0, 0 }, "UserWindow (FLOODGATE_USER_WINDOW)", "got 0s"},
		{"negative window", func(c *Config) { c.UserWindow, c.UserCooldown = -time.Hour, 0 }, "UserWindow (FLOODGATE_USER_WINDOW)", "got -1h0m0s"},
		{"window over 30 days", func(c *Config) { c.UserWindow, c.MaxIdleTime = 31*day, 31*day }, "UserWindow (FLOODGATE_USER_WINDOW)", "720h0m0s"},

		{"zero idle time", func(c *Config) { c.MaxIdleTime = 0 }, "MaxIdleTime (FLOODGATE_MAX_IDLE_TIME)", "got 0s"},
		{"negative idle time", func(c *Config) { c.MaxIdleTime = -1 }, "MaxIdleTime (FLOODGATE_MAX_IDLE_TIME)", "got -1ns"},
		{"idle time over 30 days", func(c *Config) { c.MaxIdleTime = 31 * day }, "MaxIdleTime (FLOODGATE_MAX_IDLE_TIME)", "between"},
		{"idle time shorter than window", func(c *Config) { c.MaxIdleTime = 30 * time.Minute }, "MaxIdleTime (FLOODGATE_MAX_IDLE_TIME)", "at least UserCooldown and UserWindow"},
		{"idle time shorter than cooldown, no window", func(c *Config) {
			c.MaxRequestsPerUserHour, c.UserCooldown, c.MaxIdleTime = 0, time.Minute, 30*time.Second
		}, "MaxIdleTime (FLOODGATE_MAX_IDLE_TIME)", "admit more than the limit"},

		{"negative slots", func(c *Config) { c.MaxConcurrentUsers = -1 }, "MaxConcurrentUsers (FLOODGATE_MAX_CONCURRENT_USERS)", "got -1"},
		{"huge slots", func(c *Config) { c.MaxConcurrentUsers = 1<<20 + 1 }, "MaxConcurrentUsers (FLOODGATE_MAX_CONCURRENT_USERS)", "between 0 and 1048576"},
		{"zero lease", func(c *Config) { c.SlotLease = 0 }, "SlotLease (FLOODGATE_SLOT_LEASE)", "got 0s"},
		{"lease over a day", func(c *Config) { c.SlotLease = 25 * time.Hour }, "SlotLease (FLOODGATE_SLOT_LEASE)", "24h0m0s"},
		{"lease over idle time", func(c *Config) { c.SlotLease = time.Hour + time.Millisecond }, "SlotLease (FLOODGATE_SLOT_LEASE)", "longer than MaxIdleTime (1h0m0s)"},

		{"zero retry delay", func(c *Config) { c.LLMRetryDelay = 0 }, "LLMRetryDelay (FLOODGATE_LLM_RETRY_DELAY)", "got 0s"},
		{"retry delay over a day", func(c *Config) { c.LLMRetryDelay, c.LLMBackoffMax = 25*time.Hour, 25*time.Hour }, "LLMRetryDelay (FLOODGATE_LLM_RETRY_DELAY)", "24h0m0s"},
		{"NaN multiplier", func(c *Config) { c.LLMBackoffMultiplier = nan }, "LLMBackoffMultiplier (FLOODGATE_LLM_BACKOFF_MULTIPLIER)", "got NaN"},
		{"infinite multiplier", func(c *Config) { c.LLMBackoffMultiplier = inf }, "LLMBackoffMultiplier (FLOODGATE_LLM_BACKOFF_MULTIPLIER)", "got +Inf"},
		{"shrinking multiplier", func(c *Config) { c.LLMBackoffMultiplier = 0.5 }, "LLMBackoffMultiplier (FLOODGATE_LLM_BACKOFF_MULTIPLIER)", "between 1 and 100"},
		{"negative multiplier", func(c *Config) { c.LLMBackoffMultiplier = -2 }, "LLMBackoffMultiplier (FLOODGATE_LLM_BACKOFF_MULTIPLIER)", "got -2"},
		{"huge multiplier", func(c *Config) { c.LLMBackoffMultiplier = 101 }, "LLMBackoffMultiplier (FLOODGATE_LLM_BACKOFF_MULTIPLIER)", "got 101"},
		{"zero backoff max", func(c *Config) { c.LLMBackoffMax, c.LLMRetryDelay = 0, time.Millisecond }, "LLMBackoffMax (FLOODGATE_LLM_BACKOFF_MAX)", "got 0s"},
		{"backoff max under retry delay", func(c *Config) { c.LLMBackoffMax = time.Second }, "LLMBackoffMax (FLOODGATE_LLM_BACKOFF_MAX)", "at least LLMRetryDelay (5s)"},
		{"backoff max over a day", func(c *Config) { c.LLMBackoffMax = 25 * time.Hour }, "LLMBackoffMax (FLOODGATE_LLM_BACKOFF_MAX)", "24h0m0s"},
		{"NaN jitter", func(c *Config) { c.LLMBackoffJitter = nan }, "LLMBackoffJitter (FLOODGATE_LLM_BACKOFF_JITTER)", "got NaN"},
		{"negative jitter", func(c *Config) { c.LLMBackoffJitter = -0.1 }, "LLMBackoffJitter (FLOODGATE_LLM_BACKOFF_JITTER)", "between 0 and 1"},
		{"jitter over 1", func(c *Config) { c.LLMBackoffJitter = 1.5 }, "LLMBackoffJitter (FLOODGATE_LLM_BACKOFF_JITTER)", "got 1.5"},
		{"infinite jitter", func(c *Config) { c.LLMBackoffJitter = math.Inf(-1) }, "LLMBackoffJitter (FLOODGATE_LLM_BACKOFF_JITTER)", "got -Inf"},
		{"zero probe lease", func(c *Config) { c.LLMProbeLease = 0 }, "LLMProbeLease (FLOODGATE_LLM_PROBE_LEASE)", "got 0s"},
		{"probe lease over a day", func(c *Config) { c.LLMProbeLease = 25 * time.Hour }, "LLMProbeLease (FLOODGATE_LLM_PROBE_LEASE)", "24h0m0s"},

		{"API without a name", func(c *Config) { c.APIRates = APIRates{"": {PerSecond: 1, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", "empty API name"},
		{"API name too long", func(c *Config) { c.APIRates = APIRates{strings.Repeat("n", MaxNameLen+1): {PerSecond: 1, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", "513 bytes"},
		{"API name not UTF-8", func(c *Config) { c.APIRates = APIRates{"a\xff": {PerSecond: 1, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", "not UTF-8"},
		{"API rate zero", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: 0, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", `"igdb": rate must be above 0`},
		{"API rate negative", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: -4, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", "got -4"},
		{"API rate NaN", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: nan, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", "got NaN"},
		{"API rate infinite", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: inf, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", "got +Inf"},
		{"API rate huge", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: 2e6, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", "at most 1e+06"},
		{"API burst zero", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: 4, Burst: 0}} }, "APIRates (FLOODGATE_API_RATES)", "burst must be between 1 and 1048576, got 0"},
		{"API refill over 30 days", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: 1e-9, Burst: 1}} }, "APIRates (FLOODGATE_API_RATES)", "to refill"},
		{"API burst huge", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: 4, Burst: 1<<20 + 1}} }, "APIRates (FLOODGATE_API_RATES)", "got 1048577"},
		{"API refill over idle time", func(c *Config) { c.APIRates = APIRates{"igdb": {PerSecond: 1, Burst: 3601}} }, "APIRates (FLOODGATE_API_RATES)", `"igdb" refills in 1h0m1s, longer than MaxIdleTime (1h0m0s)`},

		{"zero Redis timeout", func(c *Config) { c.RedisTimeout = 0 }, "RedisTimeout (FLOODGATE_REDIS_TIMEOUT)", "got 0s"},
		{"Redis timeout over a minute", func(c *Config) { c.RedisTimeout = 2 * time.Minute }, "RedisTimeout (FLOODGATE_REDIS_TIMEOUT)", "got 2m0s"},
		{"negative cache", func(c *Config) { c.LocalCacheSize = -1 }, "LocalCacheSize (FLOODGATE_LOCAL_CACHE_SIZE)", "got -1"},
		{"huge cache", func(c *Config) { c.LocalCacheSize = 10_000_001 }, "LocalCacheSize (FLOODGATE_LOCAL_CACHE_SIZE)", "got 10000001"},

		{"unknown failure mode", func(c *Config) { c.OnRedisError = 3 }, "OnRedisError (FLOODGATE_ON_REDIS_ERROR)", "local, open or closed, got 3"},
		{"negative failure mode", func(c *Config) { c.BackoffOnRedisError = -1 }, "BackoffOnRedisError (FLOODGATE_BACKOFF_ON_REDIS_ERROR)", "got -1"},
		{"bucket failure mode", func(c *Config) { c.BucketOnRedisError = 9 }, "BucketOnRedisError (FLOODGATE_BUCKET_ON_REDIS_ERROR)", "got 9"},
		{"slots failure mode", func(c *Config) { c.SlotsOnRedisError = 4 }, "SlotsOnRedisError (FLOODGATE_SLOTS_ON_REDIS_ERROR)", "got 4"},
	} {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s: Validate accepted %+v", tc.name, cfg)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "limiter: ") || !strings.Contains(msg, tc.field) || !strings.Contains(msg, tc.says) {
			t.Errorf("%s: error %q, want \"limiter: \" first, %q and %q", tc.name, msg, tc.field, tc.says)
		}
	}
}

// TestValidateReportsEverything: one error per bad field, not just the
// first.
func TestValidateReportsEverything(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UserCooldown = -1
	cfg.LLMBackoffJitter = math.NaN()
	cfg.LocalCacheSize = -5
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, v := range []string{"FLOODGATE_USER_COOLDOWN", "FLOODGATE_LLM_BACKOFF_JITTER", "FLOODGATE_LOCAL_CACHE_SIZE"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error %q does not name %s", err, v)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("error has %d lines, want 3: %q", n, err)
	}
}

func TestConfigFromEnvDefaults(t *testing.T) {
	got, err := configFromEnv(map[string]string{"UNRELATED": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("no variables:\n got %+v\nwant %+v", got, want)
	}
}

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env   map[string]string
		check func(Config) bool
		want  string
	}{
		{map[string]string{"FLOODGATE_USER_COOLDOWN": "10s"}, func(c Config) bool { return c.UserCooldown == 10*time.Second }, "10s"},
		{map[string]string{"FLOODGATE_USER_COOLDOWN": "7"}, func(c Config) bool { return c.UserCooldown == 7*time.Second }, "plain seconds"},
		{map[string]string{"FLOODGATE_USER_COOLDOWN": " 2.5 "}, func(c Config) bool { return c.UserCooldown == 2500*time.Millisecond }, "fractional seconds"},
		{map[string]string{"FLOODGATE_USER_COOLDOWN": "1m30s"}, func(c Config) bool { return c.UserCooldown == 90*time.Second }, "90s"},
		{map[string]string{"FLOODGATE_USER_COOLDOWN": "0"}, func(c Config) bool { return c.UserCooldown == 0 }, "cooldown off"},
		{map[string]string{"FLOODGATE_USER_COOLDOWN": ""}, func(c Config) bool { return c.UserCooldown == 10*time.Second }, "empty means default"},
		{map[string]string{"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR": "127", "FLOODGATE_USER_WINDOW": "7200", "FLOODGATE_MAX_IDLE_TIME": "2h"},
			func(c Config) bool {
				return c.MaxRequestsPerUserHour == 127 && c.UserWindow == 2*time.Hour && c.MaxIdleTime == 2*time.Hour
			}, "window settings"},
		{map[string]string{"FLOODGATE_KEY_PREFIX": "bot1:"}, func(c Config) bool { return c.KeyPrefix == "bot1:" }, "prefix"},
		{map[string]string{"FLOODGATE_MAX_CONCURRENT_USERS": "3", "FLOODGATE_SLOT_LEASE": "45"}, func(c Config) bool { return c.MaxConcurrentUsers == 3 && c.SlotLease == 45*time.Second }, "slots"},
		{map[string]string{"FLOODGATE_LLM_RETRY_DELAY": "1", "FLOODGATE_LLM_BACKOFF_MULTIPLIER": "1.5", "FLOODGATE_LLM_BACKOFF_MAX": "10m", "FLOODGATE_LLM_BACKOFF_JITTER": "0.2", "FLOODGATE_LLM_PROBE_LEASE": "500ms"},
			func(c Config) bool {
				return c.LLMRetryDelay == time.Second && c.LLMBackoffMultiplier == 1.5 && c.LLMBackoffMax == 10*time.Minute &&
					c.LLMBackoffJitter == 0.2 && c.LLMProbeLease == 500*time.Millisecond
			}, "backoff"},
		{map[string]string{"FLOODGATE_API_RATES": "wikipedia=1,igdb=4/2"},
			func(c Config) bool {
				return reflect.DeepEqual(c.APIRates, APIRates{"wikipedia": {1, 1}, "igdb": {4, 2}})
			}, "two rates"},
		{map[string]string{"FLOODGATE_API_RATES": " wikipedia = 0.5 / 3 , steam=10 "},
			func(c Config) bool {
				return reflect.DeepEqual(c.APIRates, APIRates{"wikipedia": {0.5, 3}, "steam": {10, 1}})
			}, "spaces and fractions"},
		{map[string]string{"FLOODGATE_REDIS_TIMEOUT": "0.1"}, func(c Config) bool { return c.RedisTimeout == 100*time.Millisecond }, "timeout in seconds"},
		{map[string]string{"FLOODGATE_LOCAL_CACHE_SIZE": "0"}, func(c Config) bool { return c.LocalCacheSize == 0 }, "cache off"},
		{map[string]string{"FLOODGATE_ON_REDIS_ERROR": "open", "FLOODGATE_BACKOFF_ON_REDIS_ERROR": "CLOSED", "FLOODGATE_BUCKET_ON_REDIS_ERROR": " local ", "FLOODGATE_SLOTS_ON_REDIS_ERROR": "closed"},
			func(c Config) bool {
				return c.OnRedisError == FailOpen && c.BackoffOnRedisError == FailClosed && c.BucketOnRedisError == FailLocal && c.SlotsOnRedisError == FailClosed
			}, "failure modes"},
		{map[string]string{"REDIS_URL": "redis://fallback:6379"}, func(c Config) bool { return c.RedisURL == "redis://fallback:6379" }, "REDIS_URL fallback"},
		{map[string]string{"REDIS_URL": "redis://fallback:6379", "FLOODGATE_REDIS_URL": "redis://own:6379"}, func(c Config) bool { return c.RedisURL == "redis://own:6379" }, "FLOODGATE_REDIS_URL wins"},
		{map[string]string{"REDIS_URL": "redis://fallback:6379", "FLOODGATE_REDIS_URL": ""}, func(c Config) bool { return c.RedisURL == "redis://fallback:6379" }, "empty FLOODGATE_REDIS_URL"},
		{map[string]string{"FLOODGATE_OBSERVER": "x"}, func(c Config) bool { return c.Observer == nil }, "Observer is not read"},
	} {
		cfg, err := configFromEnv(tc.env)
		if err != nil {
			t.Errorf("%s %v: %v", tc.want, tc.env, err)
			continue
		}
		if !tc.check(cfg) {
			t.Errorf("%s %v: got %+v", tc.want, tc.env, cfg)
		}
	}
}

func TestConfigFromEnvRejects(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		says        string
	}{
		{"FLOODGATE_USER_COOLDOWN", "ten", "neither seconds nor a Go duration"},
		{"FLOODGATE_USER_COOLDOWN", "10 s", "neither seconds"},
		{"FLOODGATE_USER_COOLDOWN", "NaN", "not a usable number of seconds"},
		{"FLOODGATE_USER_COOLDOWN", "+Inf", "not a usable number"},
		{"FLOODGATE_USER_COOLDOWN", "1e300", "not a usable number"},
		{"FLOODGATE_USER_COOLDOWN", "-5", "got -5s"},
		{"FLOODGATE_USER_COOLDOWN", "-5s", "got -5s"},
		{"FLOODGATE_USER_COOLDOWN", "9999999999h", "neither seconds"},
		{"FLOODGATE_USER_COOLDOWN", "2h", "longer than UserWindow"},
		{"FLOODGATE_USER_WINDOW", "0", "got 0s"},
		{"FLOODGATE_MAX_IDLE_TIME", "1m", "at least UserCooldown and UserWindow"},
		{"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR", "20.5", "20.5"},
		{"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR", "many", "many"},
		{"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR", "200", "between 0 and 127"},
		{"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR", "99999999999999999999", "99999999999999999999"},
		{"FLOODGATE_MAX_CONCURRENT_USERS", "-1", "got -1"},
		{"FLOODGATE_SLOT_LEASE", "forever", "neither seconds"},
		{"FLOODGATE_LLM_BACKOFF_MULTIPLIER", "NaN", "got NaN"},
		{"FLOODGATE_LLM_BACKOFF_MULTIPLIER", "two", "two"},
		{"FLOODGATE_LLM_BACKOFF_JITTER", "2", "between 0 and 1"},
		{"FLOODGATE_LLM_BACKOFF_MAX", "1", "at least LLMRetryDelay"},
		{"FLOODGATE_LLM_PROBE_LEASE", "0", "got 0s"},
		{"FLOODGATE_REDIS_TIMEOUT", "0", "got 0s"},
		{"FLOODGATE_REDIS_TIMEOUT", "5m", "got 5m0s"},
		{"FLOODGATE_LOCAL_CACHE_SIZE", "1e3", "1e3"},
		{"FLOODGATE_KEY_PREFIX", "bot{1}:", "must not contain"},
		{"FLOODGATE_ON_REDIS_ERROR", "maybe", `"maybe" is not local, open or closed`},
		{"FLOODGATE_ON_REDIS_ERROR", "1", "not local, open or closed"},
		{"FLOODGATE_BACKOFF_ON_REDIS_ERROR", "fail", "not local, open or closed"},
		{"FLOODGATE_BUCKET_ON_REDIS_ERROR", "", ""}, // empty: default, no error (checked below)
		{"FLOODGATE_SLOTS_ON_REDIS_ERROR", "opened", "not local, open or closed"},
		{"FLOODGATE_API_RATES", "wikipedia", "is not name=rate[/burst]"},
		{"FLOODGATE_API_RATES", "=1", "is not name=rate[/burst]"},
		{"FLOODGATE_API_RATES", "a=1,", "is not name=rate[/burst]"},
		{"FLOODGATE_API_RATES", "a=x", `rate "x" is not a number`},
		{"FLOODGATE_API_RATES", "a=", "is not a number"},
		{"FLOODGATE_API_RATES", "a=1/x", `burst "x" is not an integer`},
		{"FLOODGATE_API_RATES", "a=1/", "is not an integer"},
		{"FLOODGATE_API_RATES", "a=1/2/3", `burst "2/3"`},
		{"FLOODGATE_API_RATES", "a=1/2.5", "is not an integer"},
		{"FLOODGATE_API_RATES", "a=1/0", "burst must be between 1"},
		{"FLOODGATE_API_RATES", "a=0", "rate must be above 0"},
		{"FLOODGATE_API_RATES", "a=-1", "rate must be above 0"},
		{"FLOODGATE_API_RATES", "a=inf", "got +Inf"},
		{"FLOODGATE_API_RATES", "a=NaN", "got NaN"},
		{"FLOODGATE_API_RATES", "a=1e7", "at most 1e+06"},
		{"FLOODGATE_API_RATES", "a=1,a=2", `API "a" is given twice`},
		{"FLOODGATE_API_RATES", "a\xff=1", "not UTF-8"},
	} {
		_, err := configFromEnv(map[string]string{tc.name: tc.value})
		if tc.value == "" {
			if err != nil {
				t.Errorf("%s=%q: %v, want the default", tc.name, tc.value, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s=%q: accepted", tc.name, tc.value)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "limiter: ") || !strings.Contains(msg, tc.name) || !strings.Contains(msg, tc.says) {
			t.Errorf("%s=%q: error %q, want \"limiter: \" first, the variable and %q", tc.name, tc.value, msg, tc.says)
		}
	}
}

// TestConfigFromEnvNamesEveryBadVariable: several bad variables, each named.
func TestConfigFromEnvNamesEveryBadVariable(t *testing.T) {
	_, err := configFromEnv(map[string]string{
		"FLOODGATE_USER_COOLDOWN":          "soon",
		"FLOODGATE_LLM_BACKOFF_MULTIPLIER": "x",
		"FLOODGATE_ON_REDIS_ERROR":         "panic",
	})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, v := range []string{"FLOODGATE_USER_COOLDOWN", "FLOODGATE_LLM_BACKOFF_MULTIPLIER", "FLOODGATE_ON_REDIS_ERROR"} {
		if !strings.Contains(err.Error(), v) {
			t.Errorf("error %q does not name %s", err, v)
		}
	}
}

// TestConfigFromProcessEnv: ConfigFromEnv reads the real environment.
func TestConfigFromProcessEnv(t *testing.T) {
	t.Setenv("FLOODGATE_USER_COOLDOWN", "3")
	t.Setenv("FLOODGATE_REDIS_URL", "")
	t.Setenv("REDIS_URL", "redis://from-env:6379")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UserCooldown != 3*time.Second || cfg.RedisURL != "redis://from-env:6379" {
		t.Fatalf("UserCooldown %v, RedisURL %q; want 3s and the REDIS_URL fallback", cfg.UserCooldown, cfg.RedisURL)
	}
	t.Setenv("FLOODGATE_USER_COOLDOWN", "-3")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "FLOODGATE_USER_COOLDOWN") {
		t.Fatalf("bad FLOODGATE_USER_COOLDOWN: %v", err)
	}
}

func TestAPIRatesRoundTrip(t *testing.T) {
	for _, in := range []string{"", "wikipedia=1,igdb=4/2", "b=0.25/7,a=1000000/1048576", "x=1e-3"} {
		var r APIRates
		if err := r.UnmarshalText([]byte(in)); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		var back APIRates
		if err := back.UnmarshalText([]byte(r.String())); err != nil {
			t.Fatalf("%q -> %q: %v", in, r.String(), err)
		}
		if !reflect.DeepEqual(r, back) {
			t.Fatalf("%q -> %q -> %v, want %v", in, r.String(), back, r)
		}
	}
	if got := (APIRates{"wikipedia": {1, 1}, "igdb": {4, 2}}).String(); got != "igdb=4/2,wikipedia=1/1" {
		t.Fatalf("String() = %q", got)
	}
}

func TestAPIRatesUnmarshalKeepsOldValueOnError(t *testing.T) {
	r := APIRates{"keep": {1, 1}}
	if err := r.UnmarshalText([]byte("a=1,b=zz")); err == nil {
		t.Fatal("accepted")
	}
	if !reflect.DeepEqual(r, APIRates{"keep": {1, 1}}) {
		t.Fatalf("a failed UnmarshalText changed the value to %v", r)
	}
}

func TestFailureModeText(t *testing.T) {
	for m, s := range map[FailureMode]string{FailLocal: "local", FailOpen: "open", FailClosed: "closed", 7: "FailureMode(7)", -1: "FailureMode(-1)"} {
		if m.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(m), m.String(), s)
		}
	}
}

func TestSubMillisecondCooldownRejected(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UserCooldown = 500 * time.Microsecond
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "FLOODGATE_USER_COOLDOWN") {
		t.Fatalf("sub-millisecond cooldown: %v", err)
	}
}

func TestAPIRateErrorNamesPackageOnce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.APIRates = APIRates{"x": {PerSecond: -1, Burst: 1}}
	if err := cfg.Validate(); err == nil || strings.Count(err.Error(), "limiter: ") != 1 {
		t.Fatalf("API rate error repeats the package prefix: %v", err)
	}
}

func TestAPIRatesNoneMeansNoAPIs(t *testing.T) {
	got, err := configFromEnv(map[string]string{"FLOODGATE_API_RATES": "none"})
	if err != nil || len(got.APIRates) != 0 {
		t.Fatalf("FLOODGATE_API_RATES=none: %v, %v", got.APIRates, err)
	}
}

// FailClosed's doc: every policy denies with ReasonRedisDown, Degraded, and
// the same 1 s RetryAfter and ResetAfter; Slots returns ErrRedisUnavailable.
func TestFailClosedWaitsOneSecondEverywhere(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LocalCacheSize = 0
	cfg.RedisTimeout = 50 * time.Millisecond
	cfg.OnRedisError, cfg.BackoffOnRedisError, cfg.BucketOnRedisError, cfg.SlotsOnRedisError = FailClosed, FailClosed, FailClosed, FailClosed
	l, r := newTestLimiter(t, cfg)
	b := mustBackoff(t, l, "llm")
	api := mustBucket(t, l, "api", 1, 1)
	pool := mustSlots(t, l, "llm", 1, time.Second)
	r.mr.Close()
	ctx := context.Background()
	want := Decision{Reason: ReasonRedisDown, RetryAfter: time.Second, ResetAfter: time.Second, Degraded: true}
	check := func(what string, d Decision, err error) {
		t.Helper()
		if err != nil || d != want {
			t.Errorf("%s = %+v, %v; want %+v", what, d, err, want)
		}
	}
	d, err := l.Allow(ctx, "u")
	check("Allow", d, err)
	ds, err := l.AllowMany(ctx, []string{"u", "v"})
	if len(ds) != 2 {
		t.Fatalf("AllowMany = %+v, %v", ds, err)
	}
	check("AllowMany[0]", ds[0], err)
	check("AllowMany[1]", ds[1], err)
	d, err = api.Allow(ctx)
	check("Bucket.Allow", d, err)
	d, err = b.Check(ctx, "ep")
	check("Backoff.Check", d, err)
	d, err = b.Failure(ctx, "ep")
	check("Backoff.Failure", d, err)
	_, d, err = b.Pick(ctx, "ep", "other")
	check("Backoff.Pick", d, err)
	if _, err := pool.TryAcquire(ctx, "u"); !errors.Is(err, ErrRedisUnavailable) {
		t.Errorf("TryAcquire: %v, want ErrRedisUnavailable", err)
	}
}
