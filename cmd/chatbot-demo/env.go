package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/floodgate/floodgate/limiter"
)

// demoEnv is the demo's own settings (DEMO_*), read with caarlos0/env
// (envDefault gives each default). The limiter's come from FLOODGATE_*
// through limiter.ConfigFromEnv.
type demoEnv struct {
	Replicas    int           `env:"DEMO_REPLICAS" envDefault:"3"`
	ReplicaID   int           `env:"DEMO_REPLICA_ID"` // 1..Replicas (replica mode); 0: unset
	Messages    int           `env:"DEMO_MESSAGES" envDefault:"2000"`
	Duration    time.Duration `env:"DEMO_DURATION" envDefault:"20s"`
	Linger      time.Duration `env:"DEMO_LINGER"`
	Seed        uint64        `env:"DEMO_SEED" envDefault:"1"`
	MetricsAddr string        `env:"DEMO_METRICS_ADDR"`
	LogFormat   string        `env:"DEMO_LOG_FORMAT"` // json or text ("" = mode's default)
	LogLevel    slog.Level    `env:"DEMO_LOG_LEVEL"`
	Output      string        `env:"DEMO_OUTPUT" envDefault:"table"` // table or json (launcher: its report; replica: json prints the summary)
	// Set by the launcher for its replicas; compose replicas agree on them
	// through Redis instead.
	RunID string `env:"DEMO_RUN_ID"`
	// DEMO_START_AT, Unix milliseconds, is read by readEnv itself: the env
	// package reads a time.Time as RFC 3339 only.
	StartAt time.Time `env:"-"`
}

const startAtVar = "DEMO_START_AT"

const (
	maxReplicas = 64
	maxMessages = 1_000_000
	maxDuration = time.Hour
	maxLinger   = 30 * 24 * time.Hour
)

// demoChecks say, field by field in the order errors are listed, what a
// value that is set must be: the env package parses the type, ok checks
// the range, want says both in the error.
var demoChecks = []struct {
	field string
	want  string
	ok    func(e *demoEnv) bool
}{
	{"Replicas", fmt.Sprintf("an integer from 1 to %d", maxReplicas), func(e *demoEnv) bool { return 1 <= e.Replicas && e.Replicas <= maxReplicas }},
	{"ReplicaID", fmt.Sprintf("an integer from 1 to %d", maxReplicas), func(e *demoEnv) bool { return 1 <= e.ReplicaID && e.ReplicaID <= maxReplicas }},
	{"Messages", fmt.Sprintf("an integer from 1 to %d", maxMessages), func(e *demoEnv) bool { return 1 <= e.Messages && e.Messages <= maxMessages }},
	{"Duration", fmt.Sprintf("a duration from 0s to %v, such as 20s", maxDuration), func(e *demoEnv) bool { return 0 <= e.Duration && e.Duration <= maxDuration }},
	{"Linger", fmt.Sprintf("a duration from 0s to %v, such as 20s", maxLinger), func(e *demoEnv) bool { return 0 <= e.Linger && e.Linger <= maxLinger }},
	{"Seed", "a non-negative integer", func(*demoEnv) bool { return true }},
	{"MetricsAddr", "an address such as :9100", func(*demoEnv) bool { return true }},
	{"LogFormat", "json or text", func(e *demoEnv) bool {
		e.LogFormat = strings.ToLower(e.LogFormat)
		return e.LogFormat == "json" || e.LogFormat == "text"
	}},
	{"LogLevel", "debug, info, warn or error", func(*demoEnv) bool { return true }},
	{"Output", "table or json", func(e *demoEnv) bool {
		e.Output = strings.ToLower(e.Output)
		return e.Output == "table" || e.Output == "json"
	}},
	{"RunID", "1 to 16 letters or digits", func(e *demoEnv) bool { return validRunID(e.RunID) }},
	{"StartAt", "Unix milliseconds", func(e *demoEnv) bool { return e.StartAt.UnixMilli() > 0 }},
}

// readEnv reads DEMO_* through getenv (values trimmed of spaces; empty is
// unset); every error names its variable and quotes its value.
func readEnv(getenv func(string) string) (demoEnv, error) {
	vars := map[string]string{} // field -> variable
	values := map[string]string{}
	t := reflect.TypeOf(demoEnv{})
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ",")
		if name == "-" {
			name = startAtVar
		}
		vars[t.Field(i).Name] = name
		if v := strings.TrimSpace(getenv(name)); v != "" {
			values[name] = v
		}
	}
	var e demoEnv
	parseErrs := map[string]bool{} // fields whose value did not parse
	if v, set := values[startAtVar]; set {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			e.StartAt = time.UnixMilli(n)
		} else {
			parseErrs["StartAt"] = true
		}
	}
	err := env.ParseWithOptions(&e, env.Options{Environment: values})
	var agg env.AggregateError
	switch {
	case errors.As(err, &agg):
		for _, pe := range agg.Errors {
			var p env.ParseError
			if !errors.As(pe, &p) {
				return demoEnv{}, fmt.Errorf("invalid environment: %w", err)
			}
			parseErrs[p.Name] = true
		}
	case err != nil:
		return demoEnv{}, fmt.Errorf("invalid environment: %w", err)
	}
	var errs []string
	for _, c := range demoChecks {
		name := vars[c.field]
		v, set := values[name]
		if set && (parseErrs[c.field] || !c.ok(&e)) {
			errs = append(errs, fmt.Sprintf("%s=%q: want %s", name, v, c.want))
		}
		delete(parseErrs, c.field)
	}
	for f := range parseErrs { // a field without a check: still named
		errs = append(errs, fmt.Sprintf("%s=%q: not a valid value", vars[f], values[vars[f]]))
	}
	if len(errs) == 0 && e.ReplicaID > e.Replicas {
		errs = append(errs, fmt.Sprintf("DEMO_REPLICA_ID=%d: more than DEMO_REPLICAS=%d", e.ReplicaID, e.Replicas))
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

// demoDefaults compress the original bot's time scale so that a replay of 20 s
// shows every limit at work: a per-user window of one minute instead of an
// hour, a short cooldown and a quick LLM backoff. They apply only to
// variables that are not set; the counts (20 per window, 7 slots) stay the
// original bot's.
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
