package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// demoEnv is the demo's own settings (DEMO_*). The limiter's come from
// FLOODGATE_* through limiter.ConfigFromEnv.
type demoEnv struct {
	ReplicaID   int           // DEMO_REPLICA_ID, 1..Replicas (replica mode)
	Replicas    int           // DEMO_REPLICAS
	Seed        uint64        // DEMO_SEED
	Messages    int           // DEMO_MESSAGES
	Duration    time.Duration // DEMO_DURATION
	MetricsAddr string        // DEMO_METRICS_ADDR
	Linger      time.Duration // DEMO_LINGER
	LogFormat   string        // DEMO_LOG_FORMAT: json or text ("" = mode's default)
	LogLevel    slog.Level    // DEMO_LOG_LEVEL
	Output      string        // DEMO_OUTPUT: table or json (launcher: its report; replica: json prints the summary)
	// Set by the launcher for its replicas; compose replicas agree on them
	// through Redis instead.
	RunID   string    // DEMO_RUN_ID
	StartAt time.Time // DEMO_START_AT, Unix milliseconds
}

const (
	maxReplicas = 64
	maxMessages = 1_000_000
	maxDuration = time.Hour
)

// readEnv reads DEMO_* through getenv; every error names its variable.
func readEnv(getenv func(string) string) (demoEnv, error) {
	e := demoEnv{Replicas: 3, Seed: 1, Messages: 2000, Duration: 20 * time.Second, Output: "table"}
	var errs []string
	intVar := func(name string, dst *int, lo, hi int) {
		s := strings.TrimSpace(getenv(name))
		if s == "" {
			return
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Sprintf("%s=%q: want an integer from %d to %d", name, s, lo, hi))
			return
		}
		*dst = n
	}
	durVar := func(name string, dst *time.Duration, lo, hi time.Duration) {
		s := strings.TrimSpace(getenv(name))
		if s == "" {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < lo || d > hi {
			errs = append(errs, fmt.Sprintf("%s=%q: want a duration from %v to %v, such as 20s", name, s, lo, hi))
			return
		}
		*dst = d
	}
	intVar("DEMO_REPLICAS", &e.Replicas, 1, maxReplicas)
	intVar("DEMO_REPLICA_ID", &e.ReplicaID, 1, maxReplicas)
	intVar("DEMO_MESSAGES", &e.Messages, 1, maxMessages)
	durVar("DEMO_DURATION", &e.Duration, 0, maxDuration)
	durVar("DEMO_LINGER", &e.Linger, 0, 30*24*time.Hour)
	if s := strings.TrimSpace(getenv("DEMO_SEED")); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Sprintf("DEMO_SEED=%q: want a non-negative integer", s))
		}
		e.Seed = n
	}
	if e.ReplicaID > e.Replicas {
		errs = append(errs, fmt.Sprintf("DEMO_REPLICA_ID=%d: more than DEMO_REPLICAS=%d", e.ReplicaID, e.Replicas))
	}
	e.MetricsAddr = strings.TrimSpace(getenv("DEMO_METRICS_ADDR"))
	switch f := strings.ToLower(strings.TrimSpace(getenv("DEMO_LOG_FORMAT"))); f {
	case "", "json", "text":
		e.LogFormat = f
	default:
		errs = append(errs, fmt.Sprintf("DEMO_LOG_FORMAT=%q: want json or text", f))
	}
	if s := strings.TrimSpace(getenv("DEMO_LOG_LEVEL")); s != "" {
		if err := e.LogLevel.UnmarshalText([]byte(s)); err != nil {
			errs = append(errs, fmt.Sprintf("DEMO_LOG_LEVEL=%q: want debug, info, warn or error", s))
		}
	}
	switch o := strings.ToLower(strings.TrimSpace(getenv("DEMO_OUTPUT"))); o {
	case "":
	case "table", "json":
		e.Output = o
	default:
		errs = append(errs, fmt.Sprintf("DEMO_OUTPUT=%q: want table or json", o))
	}
	e.RunID = strings.TrimSpace(getenv("DEMO_RUN_ID"))
	if e.RunID != "" && !validRunID(e.RunID) {
		errs = append(errs, fmt.Sprintf("DEMO_RUN_ID=%q: want 1 to 16 letters or digits", e.RunID))
	}
	if s := strings.TrimSpace(getenv("DEMO_START_AT")); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Sprintf("DEMO_START_AT=%q: want Unix milliseconds", s))
		} else {
			e.StartAt = time.UnixMilli(n)
		}
	}
	if len(errs) > 0 {
		return demoEnv{}, fmt.Errorf("invalid environment: %s", strings.Join(errs, "; "))
	}
	return e, nil
}

func validRunID(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// demoDefaults compress the seed's time scale so that a replay of 20 s
// shows every limit at work: a per-user window of one minute instead of an
// hour, a short cooldown and a quick LLM backoff. They apply only to
// variables that are not set; the counts (20 per window, 7 slots) stay the
// seed's.
var demoDefaults = []struct {
	env   string
	value string
	apply func(*limiter.Config, time.Duration)
}{
	{"FLOODGATE_USER_COOLDOWN", "200ms", func(c *limiter.Config, d time.Duration) { c.UserCooldown = d }},
	{"FLOODGATE_USER_WINDOW", "1m", func(c *limiter.Config, d time.Duration) { c.UserWindow = d }},
	{"FLOODGATE_MAX_IDLE_TIME", "2m", func(c *limiter.Config, d time.Duration) { c.MaxIdleTime = d }},
	{"FLOODGATE_SLOT_LEASE", "5s", func(c *limiter.Config, d time.Duration) { c.SlotLease = d }},
	{"FLOODGATE_LLM_RETRY_DELAY", "250ms", func(c *limiter.Config, d time.Duration) { c.LLMRetryDelay = d }},
	{"FLOODGATE_LLM_BACKOFF_MAX", "4s", func(c *limiter.Config, d time.Duration) { c.LLMBackoffMax = d }},
	{"FLOODGATE_LLM_PROBE_LEASE", "2s", func(c *limiter.Config, d time.Duration) { c.LLMProbeLease = d }},
	// A laptop busy with other things can stall Redis past the library's
	// 250ms; the demo is about sharing, not about the fallback.
	{"FLOODGATE_REDIS_TIMEOUT", "1s", func(c *limiter.Config, d time.Duration) { c.RedisTimeout = d }},
}

// demoConfig reads the limiter's settings from the environment and fills
// the unset time settings with demoDefaults.
func demoConfig() (limiter.Config, error) {
	cfg, err := limiter.ConfigFromEnv()
	if err != nil {
		return limiter.Config{}, err
	}
	for _, d := range demoDefaults {
		if _, set := os.LookupEnv(d.env); set {
			continue
		}
		v, err := time.ParseDuration(d.value)
		if err != nil {
			return limiter.Config{}, fmt.Errorf("demo default %s=%s: %w", d.env, d.value, err)
		}
		d.apply(&cfg, v)
	}
	if err := cfg.Validate(); err != nil {
		return limiter.Config{}, err
	}
	return cfg, nil
}

// newLogger builds the slog logger: JSON or text on w.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
