package limiter

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// EnvPrefix starts the name of every environment variable Floodgate reads.
const EnvPrefix = "FLOODGATE_"

// Bounds that Validate enforces. They keep keys small and listpack-encoded
// and turn typos (an hour limit of 2000000) into errors instead of surprises.
const (
	// MaxUserLen bounds a user id in bytes: Twitch logins are at most 25,
	// numeric ids 20; 256 leaves room for namespaced ids without letting one
	// key cost kilobytes.
	MaxUserLen = 256
	// MaxNameLen bounds endpoint, API and slot-pool names in bytes.
	MaxNameLen = 512
	// MaxWindowRequests caps MaxRequestsPerUserHour. Redis keeps a sorted set
	// with at most 128 entries (zset-max-listpack-entries) as a compact
	// listpack; the window uses one entry for its base time, so 127 requests
	// is the most it can hold before Redis converts it to a skiplist that
	// costs about 14 times more memory per user (README, Limitations).
	MaxWindowRequests = 127
	maxKeyPrefixLen   = 64
	maxPolicyDuration = 30 * 24 * time.Hour
	maxRedisTimeout   = time.Minute
	maxSlots          = 1 << 20
	maxLocalCache     = 10_000_000
	maxAPIRate        = 1e6
	maxBurst          = 1 << 20
)

// Config holds every Floodgate setting. The zero value of a numeric field
// turns its policy off (see each field), so start from DefaultConfig or
// ConfigFromEnv. Fields name the config.yaml setting they replace (see the
// package doc). Validate says what is accepted.
type Config struct {
	// KeyPrefix starts every Redis key Floodgate writes. It must not contain
	// '{' or '}', which would break the per-user hash tags. Empty means
	// "floodgate:".
	KeyPrefix string `env:"KEY_PREFIX"`

	// UserCooldown is the minimum time between two accepted requests of one
	// user; 10s by default (user_cooldown: 10). 0 turns the cooldown off.
	UserCooldown time.Duration `env:"USER_COOLDOWN"`
	// MaxRequestsPerUserHour is how many requests one user may have accepted
	// per window (UserWindow, an hour by default, hence the name, kept from
	// the config.yaml key max_requests_per_user_hour), at most
	// MaxWindowRequests; 20 by default. 0 turns the window off.
	MaxRequestsPerUserHour int `env:"MAX_REQUESTS_PER_USER_HOUR"`
	// UserWindow is the length of the sliding window, 1h by default.
	UserWindow time.Duration `env:"USER_WINDOW"`
	// MaxIdleTime bounds how long a key outlives its last write; 1h by
	// default (max_idle_time: 3600). No key is cut short to fit it, since a
	// key gone early would forget a limit still in force and admit more
	// than the limit. Instead it must be at least what keys live for:
	// UserWindow and UserCooldown (a user's key), SlotLease when
	// MaxConcurrentUsers > 0 (a pool's key; Limiter.Slots checks other
	// leases) and every APIRates refill time, Burst calls at PerSecond (a
	// bucket's key; Limiter.Bucket checks other rates). Two exceptions: a
	// Backoff key keeps its whole open period or probe lease even when that
	// is longer (LLMBackoffMax or LLMProbeLease may exceed MaxIdleTime;
	// only the memory of the delay's level after it is capped), and after
	// Redis TIME steps back a user's key lives longer by the step.
	MaxIdleTime time.Duration `env:"MAX_IDLE_TIME"`

	// MaxConcurrentUsers is the default size of a Slots pool; 7 by default
	// (max_concurrent_users: 7). 0 means no default: Limiter.Slots then
	// needs SlotsSettings.Size.
	MaxConcurrentUsers int `env:"MAX_CONCURRENT_USERS"`
	// SlotLease is how long a slot stays held without a Refresh; a replica
	// that crashes loses its slots after this long. 30s by default.
	SlotLease time.Duration `env:"SLOT_LEASE"`

	// LLMRetryDelay is the first backoff delay after a failure; 5s by
	// default (llm_retry_delay: 5).
	LLMRetryDelay time.Duration `env:"LLM_RETRY_DELAY"`
	// LLMBackoffMultiplier multiplies the delay after each further
	// consecutive failure; 2 by default (llm_backoff_multiplier: 2).
	LLMBackoffMultiplier float64 `env:"LLM_BACKOFF_MULTIPLIER"`
	// LLMBackoffMax caps the delay; 300s by default (llm_backoff_max: 300).
	LLMBackoffMax time.Duration `env:"LLM_BACKOFF_MAX"`
	// LLMBackoffJitter randomly shortens each delay by up to this fraction
	// (0 to 1) so replicas do not all retry at once. 0 means none.
	LLMBackoffJitter float64 `env:"LLM_BACKOFF_JITTER"`
	// LLMProbeLease is how long the single half-open probe may run before
	// another caller may probe: a crashed prober cannot wedge an endpoint.
	// 30s by default.
	LLMProbeLease time.Duration `env:"LLM_PROBE_LEASE"`

	// UserTokenBudget is how many units (LLM tokens) one user may spend
	// within UserTokenWindow under a Budget whose Limit is left 0, at
	// most MaxBudgetUnits; 0 (the default) turns such budgets off
	// (max_tokens_per_user_hour).
	UserTokenBudget int `env:"USER_TOKEN_BUDGET"`
	// UserTokenWindow is a Budget's sliding window when its Window is left
	// 0; 1h by default, at most MaxIdleTime.
	UserTokenWindow time.Duration `env:"USER_TOKEN_WINDOW"`

	// APIRates are the external API limits; by default wikipedia 1/s and
	// igdb 4/s, burst 1 (wikipedia_rate_limit: 1.0, igdb_rate_limit: 4.0).
	// In the environment: FLOODGATE_API_RATES="wikipedia=1,igdb=4/4".
	APIRates APIRates `env:"API_RATES"`

	// RedisURL names the Redis to use: redis://, rediss://, a
	// comma-separated list of cluster nodes, or redis-sentinel://. Read from
	// FLOODGATE_REDIS_URL, then REDIS_URL. Used by NewClient.
	RedisURL string `env:"REDIS_URL"`
	// RedisTimeout bounds every Redis call a decision makes, 500ms by
	// default: far above a healthy round trip (~0.1 ms on a LAN), short
	// enough that a chat reply is not held up noticeably before the
	// FailureMode takes over.
	RedisTimeout time.Duration `env:"REDIS_TIMEOUT"`
	// WaitReplicas, when above 0, makes the per-user policy send WAIT
	// WaitReplicas after its decision, on the same connection, and count
	// an admission only once that many replicas hold it; one they did
	// not acknowledge in time is an outage (ErrReplicaAck) and
	// OnRedisError decides. 0 (the default) waits for none: a failover may
	// lose the last admissions. docs/reliability.md ("WaitReplicas") says
	// what it guarantees and what it does not.
	WaitReplicas int `env:"REDIS_WAIT_REPLICAS"`
	// WaitTimeout bounds that wait (WAIT's timeout); it must be shorter
	// than RedisTimeout. 0 means RedisTimeout/2.
	WaitTimeout time.Duration `env:"REDIS_WAIT_TIMEOUT"`

	// LocalCacheSize is how many denied users each Limiter remembers
	// in-process until their RetryAfter passes, answering their repeat
	// requests without a round trip. 0 turns the cache off.
	LocalCacheSize int `env:"LOCAL_CACHE_SIZE"`

	// OnRedisError says what the per-user policy does while Redis cannot be
	// reached; the other policies have their own fields below. See
	// FailureMode.
	OnRedisError FailureMode `env:"ON_REDIS_ERROR"`
	// BackoffOnRedisError is FailureMode of Backoff.
	BackoffOnRedisError FailureMode `env:"BACKOFF_ON_REDIS_ERROR"`
	// BucketOnRedisError is FailureMode of Bucket.
	BucketOnRedisError FailureMode `env:"BUCKET_ON_REDIS_ERROR"`
	// SlotsOnRedisError is FailureMode of Slots.
	SlotsOnRedisError FailureMode `env:"SLOTS_ON_REDIS_ERROR"`
	// BudgetOnRedisError is FailureMode of Budget.
	BudgetOnRedisError FailureMode `env:"BUDGET_ON_REDIS_ERROR"`

	// Observer, when set, is told about every decision and Redis call (see
	// the metrics package for Prometheus). Not read from the environment.
	Observer Observer `env:"-"`
}

// DefaultConfig returns the settings of the original bot's config.yaml
// rate_limiting block (see the package doc), and Floodgate's own defaults
// for everything that block does not cover.
func DefaultConfig() Config {
	return Config{
		KeyPrefix:              "floodgate:",
		UserCooldown:           10 * time.Second,
		MaxRequestsPerUserHour: 20,
		UserWindow:             time.Hour,
		MaxIdleTime:            time.Hour,
		MaxConcurrentUsers:     7,
		SlotLease:              30 * time.Second,
		LLMRetryDelay:          5 * time.Second,
		LLMBackoffMultiplier:   2,
		LLMBackoffMax:          300 * time.Second,
		LLMProbeLease:          30 * time.Second,
		UserTokenWindow:        time.Hour,
		APIRates: APIRates{
			"wikipedia": {PerSecond: 1, Burst: 1},
			"igdb":      {PerSecond: 4, Burst: 1},
		},
		RedisTimeout:        500 * time.Millisecond,
		LocalCacheSize:      10_000,
		OnRedisError:        FailLocal,
		BackoffOnRedisError: FailLocal,
		BucketOnRedisError:  FailLocal,
		SlotsOnRedisError:   FailLocal,
		BudgetOnRedisError:  FailLocal,
	}
}

// ConfigFromEnv starts from DefaultConfig and applies every FLOODGATE_*
// variable that is set (and REDIS_URL when FLOODGATE_REDIS_URL is not).
// Durations take Go syntax ("10s", "1h") or plain seconds as in
// config.yaml ("10"). A value that does not parse or does not validate is an error
// naming the variable.
func ConfigFromEnv() (Config, error) {
	return configFromEnv(nil)
}

// EnvOverrides applies every FLOODGATE_* variable that is set (and
// REDIS_URL when neither FLOODGATE_REDIS_URL nor base names a Redis) over
// base, then validates the result: a config file's settings with the
// environment winning. ConfigFromEnv is EnvOverrides(DefaultConfig()).
// Errors name the variable, or the field when base itself is invalid.
func EnvOverrides(base Config) (Config, error) {
	return envOverrides(base, nil)
}

// configFromEnv reads from environ (a map) or, when nil, the process
// environment; tests use the map.
func configFromEnv(environ map[string]string) (Config, error) {
	return envOverrides(DefaultConfig(), environ)
}

func envOverrides(base Config, environ map[string]string) (Config, error) {
	cfg := base
	// A copy, so an override never writes into the caller's map.
	if base.APIRates != nil {
		cfg.APIRates = make(APIRates, len(base.APIRates))
		for name, r := range base.APIRates {
			cfg.APIRates[name] = r
		}
	}
	opts := env.Options{
		Prefix: EnvPrefix,
		FuncMap: map[reflect.Type]env.ParserFunc{
			reflect.TypeOf(time.Duration(0)): parseDuration,
		},
	}
	if environ != nil {
		opts.Environment = environ
	}
	if err := env.ParseWithOptions(&cfg, opts); err != nil {
		return Config{}, envError(err)
	}
	if cfg.RedisURL == "" {
		if environ != nil {
			cfg.RedisURL = environ["REDIS_URL"]
		} else {
			cfg.RedisURL = os.Getenv("REDIS_URL")
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseDuration accepts Go durations and, like config.yaml, plain seconds.
func parseDuration(s string) (any, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > maxPolicyDuration.Seconds()*1000 {
			return nil, fmt.Errorf("%q is not a usable number of seconds", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("%q is neither seconds nor a Go duration such as 10s", s)
	}
	return d, nil
}

// envError rewrites the env package's errors so they name the variable.
func envError(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return fmt.Errorf("limiter: reading %s* variables: %w", EnvPrefix, err)
	}
	msgs := make([]string, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			msgs = append(msgs, fmt.Sprintf("%s: %s", envName(pe.Name), strings.TrimPrefix(pe.Err.Error(), "limiter: ")))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return fmt.Errorf("limiter: invalid environment: %s", strings.Join(msgs, "; "))
}

// envName gives the environment variable of a Config field.
func envName(field string) string {
	f, ok := reflect.TypeOf(Config{}).FieldByName(field)
	if !ok {
		return field
	}
	tag := f.Tag.Get("env")
	if tag == "" || tag == "-" {
		return field
	}
	return EnvPrefix + strings.Split(tag, ",")[0]
}

// fieldError names both the Go field and its variable, so the message helps
// whether the value came from code or from the environment.
func fieldError(field, format string, args ...any) error {
	msg := strings.TrimPrefix(fmt.Sprintf(format, args...), "limiter: ")
	return fmt.Errorf("limiter: %s (%s) %s", field, envName(field), msg)
}

func checkDuration(errs *[]error, field string, d, min, max time.Duration) {
	if d < min || d > max {
		*errs = append(*errs, fieldError(field, "must be between %v and %v, got %v", min, max, d))
	}
}

func checkFloat(errs *[]error, field string, f, min, max float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < min || f > max {
		*errs = append(*errs, fieldError(field, "must be between %g and %g, got %g", min, max, f))
	}
}

func checkInt(errs *[]error, field string, n, min, max int) {
	if n < min || n > max {
		*errs = append(*errs, fieldError(field, "must be between %d and %d, got %d", min, max, n))
	}
}

// Validate reports every setting that is negative, absurd or inconsistent,
// each naming its field and environment variable. A Config that passes
// never makes the limiter admit more than its limits.
func (c Config) Validate() error {
	var errs []error
	if len(c.KeyPrefix) > maxKeyPrefixLen {
		errs = append(errs, fieldError("KeyPrefix", "must be at most %d bytes, got %d", maxKeyPrefixLen, len(c.KeyPrefix)))
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		errs = append(errs, fieldError("KeyPrefix", "must not contain '{' or '}' (they would replace the per-user hash tag), got %q", c.KeyPrefix))
	}
	checkDuration(&errs, "UserCooldown", c.UserCooldown, 0, 24*time.Hour)
	if c.UserCooldown > 0 && c.UserCooldown < time.Millisecond {
		errs = append(errs, fieldError("UserCooldown", "must be 0 (off) or at least 1ms (the scripts count whole milliseconds), got %v", c.UserCooldown))
	}
	checkInt(&errs, "MaxRequestsPerUserHour", c.MaxRequestsPerUserHour, 0, MaxWindowRequests)
	if c.MaxRequestsPerUserHour > 0 {
		checkDuration(&errs, "UserWindow", c.UserWindow, time.Millisecond, maxPolicyDuration)
		if c.UserCooldown > c.UserWindow {
			errs = append(errs, fieldError("UserCooldown", "(%v) is longer than UserWindow (%v): the window could never bind; shorten the cooldown or set MaxRequestsPerUserHour to 0", c.UserCooldown, c.UserWindow))
		}
	}
	checkDuration(&errs, "MaxIdleTime", c.MaxIdleTime, time.Millisecond, maxPolicyDuration)
	if c.MaxIdleTime < c.UserCooldown || (c.MaxRequestsPerUserHour > 0 && c.MaxIdleTime < c.UserWindow) {
		errs = append(errs, fieldError("MaxIdleTime", "(%v) must be at least UserCooldown and UserWindow: forgetting a user sooner would admit more than the limit", c.MaxIdleTime))
	}
	checkInt(&errs, "MaxConcurrentUsers", c.MaxConcurrentUsers, 0, maxSlots)
	checkDuration(&errs, "SlotLease", c.SlotLease, time.Millisecond, 24*time.Hour)
	checkDuration(&errs, "LLMRetryDelay", c.LLMRetryDelay, time.Millisecond, 24*time.Hour)
	checkFloat(&errs, "LLMBackoffMultiplier", c.LLMBackoffMultiplier, 1, 100)
	checkDuration(&errs, "LLMBackoffMax", c.LLMBackoffMax, time.Millisecond, 24*time.Hour)
	if c.LLMBackoffMax < c.LLMRetryDelay {
		errs = append(errs, fieldError("LLMBackoffMax", "(%v) must be at least LLMRetryDelay (%v)", c.LLMBackoffMax, c.LLMRetryDelay))
	}
	checkFloat(&errs, "LLMBackoffJitter", c.LLMBackoffJitter, 0, 1)
	checkDuration(&errs, "LLMProbeLease", c.LLMProbeLease, time.Millisecond, 24*time.Hour)
	if err := c.APIRates.validate(); err != nil {
		errs = append(errs, fieldError("APIRates", "%v", err))
	}
	checkIdleTTLs(&errs, c) // bucket and slot keys within MaxIdleTime (key_ttl.go)
	checkBudgetConfig(&errs, c)
	checkDuration(&errs, "RedisTimeout", c.RedisTimeout, time.Millisecond, maxRedisTimeout)
	checkReplicaAck(&errs, c) // replica_ack.go
	checkInt(&errs, "LocalCacheSize", c.LocalCacheSize, 0, maxLocalCache)
	for _, m := range []struct {
		field string
		mode  FailureMode
	}{
		{"OnRedisError", c.OnRedisError},
		{"BackoffOnRedisError", c.BackoffOnRedisError},
		{"BucketOnRedisError", c.BucketOnRedisError},
		{"SlotsOnRedisError", c.SlotsOnRedisError},
		{"BudgetOnRedisError", c.BudgetOnRedisError},
	} {
		if !m.mode.valid() {
			errs = append(errs, fieldError(m.field, "must be local, open or closed, got %d", int(m.mode)))
		}
	}
	return errors.Join(errs...)
}

// APIRate is one external API's limit.
type APIRate struct {
	// PerSecond is the sustained rate, e.g. 4 for IGDB.
	PerSecond float64
	// Burst is how many calls may go at once after a quiet spell; at least 1.
	Burst int
}

// APIRates maps an API name to its limit. In the environment it is written
// "name=rate[/burst],...": "wikipedia=1,igdb=4/2"; "none" means no APIs.
// Burst defaults to 1.
type APIRates map[string]APIRate

// UnmarshalText parses the environment form.
func (r *APIRates) UnmarshalText(text []byte) error {
	out := APIRates{}
	s := strings.TrimSpace(string(text))
	if s == "" || s == "none" {
		// An empty variable is skipped by the env package and keeps the
		// defaults; "none" is how to say no external APIs at all.
		*r = out
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		name, spec, ok := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return fmt.Errorf("%q is not name=rate[/burst]", part)
		}
		if _, dup := out[name]; dup {
			return fmt.Errorf("API %q is given twice", name)
		}
		rateText, burstText, hasBurst := strings.Cut(spec, "/")
		rate, err := strconv.ParseFloat(strings.TrimSpace(rateText), 64)
		if err != nil {
			return fmt.Errorf("API %q: rate %q is not a number", name, rateText)
		}
		burst := 1
		if hasBurst {
			burst, err = strconv.Atoi(strings.TrimSpace(burstText))
			if err != nil {
				return fmt.Errorf("API %q: burst %q is not an integer", name, burstText)
			}
		}
		out[name] = APIRate{PerSecond: rate, Burst: burst}
	}
	if err := out.validate(); err != nil {
		return err
	}
	*r = out
	return nil
}

// String gives the environment form, names sorted.
func (r APIRates) String() string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%s/%d", n, strconv.FormatFloat(r[n].PerSecond, 'g', -1, 64), r[n].Burst)
	}
	return strings.Join(parts, ",")
}

func (r APIRates) validate() error {
	for name, a := range r {
		if err := validName("API", name); err != nil {
			return err
		}
		if err := validRate(name, a.PerSecond, a.Burst); err != nil {
			return err
		}
	}
	return nil
}

// FailureMode is what a policy does while Redis cannot be reached (after
// Config.RedisTimeout).
type FailureMode int

const (
	// FailLocal falls back to per-process limits with the same settings and
	// marks each Decision Degraded; shared limits resume by themselves when
	// Redis answers again. It is the default: a bot keeps answering, and
	// each replica still holds every user to the limits, starting from what
	// Redis last said and keeping what it admitted until the window has
	// passed, so one replica admits a user at most the limit per window and
	// N replicas at most N times it, whatever the number of outages,
	// instead of without bound.
	FailLocal FailureMode = iota
	// FailOpen admits every request (Degraded) while Redis is down.
	FailOpen
	// FailClosed denies every request: a Decision with Reason
	// ReasonRedisDown, Degraded, and RetryAfter and ResetAfter of 1 s, as
	// long as Limiter calls skip Redis after it failed to answer (a retry
	// sooner would be denied again). Slots' TryAcquire and Acquire return
	// an error wrapping ErrRedisUnavailable instead.
	FailClosed
)

var failureModeNames = [...]string{"local", "open", "closed"}

func (m FailureMode) valid() bool { return m >= FailLocal && m <= FailClosed }

// String returns "local", "open" or "closed".
func (m FailureMode) String() string {
	if !m.valid() {
		return "FailureMode(" + strconv.Itoa(int(m)) + ")"
	}
	return failureModeNames[m]
}

// UnmarshalText parses "local", "open" or "closed".
func (m *FailureMode) UnmarshalText(text []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(text)))
	for i, n := range failureModeNames {
		if s == n {
			*m = FailureMode(i)
			return nil
		}
	}
	return fmt.Errorf("%q is not local, open or closed", string(text))
}
