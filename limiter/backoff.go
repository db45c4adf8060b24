package limiter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// The LLM endpoint policy: a circuit breaker with exponential backoff whose
// state every replica shares through Redis.
//
// Keys, one small hash per endpoint that has failed since its last success:
//
//	<prefix>{e:<backoff>}:<endpoint>   fields o, d, u, p, t, f (backoff_check.lua)
//
// The hash tag is the Backoff's name, not the endpoint, so all endpoints of
// one Backoff sit in one Cluster slot and Pick decides over several of them
// in one script, one round trip. A bot has a handful of endpoints, so the
// slot they share carries a handful of keys: nothing to balance. Endpoint
// names may hold any UTF-8, braces included, because they come after the
// tag; Backoff names may not hold '{' or '}', which would make two
// (name, endpoint) pairs spell the same key.
//
// Reports are tied to a Check only through the probe's token, so the rules
// are stated by state: Success in any state closes (an answer is evidence
// the endpoint works, even from a request admitted before it opened);
// Failure while closed or half-open opens, with the next delay from
// half-open (whoever reports it: the delay ran out and the endpoint still
// fails); Failure while open is stale, from a request admitted before it
// opened, and is only counted, so the delay grows at most once per open
// period however many in-flight requests fail. Jitter is drawn in Go and
// passed to the script (never the client's clock); the schedule grows from
// the unjittered delay, so jitter does not compound.

var (
	backoffCheck   = newScript("backoff_check.lua", 6)
	backoffFailure = newScript("backoff_failure.lua", 5)
	backoffState   = newScript("backoff_state.lua", 6)
	backoffAbandon = newScript("backoff_abandon.lua", 1)
	backoffSuccess = newScript("backoff_success.lua", 1)
)

// MaxPickEndpoints bounds how many endpoints one Pick may try, so one
// script never walks an unbounded list.
const MaxPickEndpoints = 64

// State is where a circuit breaker stands, as in sony/gobreaker.
type State int8

const (
	// StateClosed: the endpoint is in use; every caller is allowed.
	StateClosed State = iota
	// StateHalfOpen: the delay ran out; one caller at a time (the probe)
	// may try the endpoint, the others wait for its result.
	StateHalfOpen
	// StateOpen: the endpoint failed and is backing off; nobody may use it.
	StateOpen
)

var backoffStateNames = [...]string{"closed", "half-open", "open"}

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	if s >= 0 && int(s) < len(backoffStateNames) {
		return backoffStateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// BackoffStatus is an endpoint's shared state, from Backoff.Status.
type BackoffStatus struct {
	State State
	// Opens counts the open periods since the last success: 3 after the
	// first failure and two failed probes (delays 5 s, 10 s, 20 s).
	Opens int
	// Failures counts every failure reported since the last success,
	// including stale ones that arrived while the endpoint was open.
	Failures int
	// Delay is the nominal (unjittered) delay of the current or last open
	// period; the next one is Delay times the multiplier, capped.
	Delay time.Duration
	// RetryAfter is, when open, the time until half-open; when half-open
	// with a probe out, the time until the probe's lease ends; else 0.
	RetryAfter time.Duration
	// Probing is true when half-open and a caller holds the probe.
	Probing bool
}

// Backoff is a circuit breaker with exponential backoff for LLM endpoints,
// shared by every replica through Redis.
//
// An endpoint starts closed: Check allows every caller. A Failure opens it
// for RetryDelay; while open, Check denies (ReasonBackoff). When the delay
// runs out it is half-open: one caller across all replicas gets the probe
// (Decision.Probe), the others are denied (ReasonProbing) until the probe
// reports. The probe's Success closes the endpoint and resets the delay; its
// Failure opens it again for the delay times Multiplier, capped at Max: 5,
// 10, 20, 40, 80, 160, 300, 300 s with the defaults. A probe that is
// cancelled is handed back with Abandon; one that never reports (its replica
// crashed) loses its lease after ProbeLease. Do runs a call and reports for
// the caller.
//
// Get one from Limiter.Backoff; the zero value is not usable. It is safe for
// concurrent use, and handles of one name on one Limiter share all state.
type Backoff struct {
	l     *Limiter
	name  string
	set   BackoffSettings // resolved: no zero fields but Jitter
	local *localBreaker
	keys  string // <prefix>{e:<name>}:, the start of every endpoint's key
	// jitter draws the random fraction in [0, 1); tests pin it.
	jitter func() float64
	// now is the clock of the FailLocal fallback alone; tests pin it.
	now func() time.Time
	// token draws a probe's token; tests pin it.
	token func() string
}

// BackoffSettings tune one Backoff. A zero field means the Limiter's Config
// value, whose default is given with each field.
type BackoffSettings struct {
	// RetryDelay is the first open period after a failure:
	// Config.LLMRetryDelay, 5s by default.
	RetryDelay time.Duration
	// Multiplier grows the delay after each failed probe, 1 to 100:
	// Config.LLMBackoffMultiplier, 2 by default.
	Multiplier float64
	// Max caps the delay, at least RetryDelay: Config.LLMBackoffMax, 300s
	// by default.
	Max time.Duration
	// Jitter shortens each open period by a random fraction of up to this
	// much, 0 to 1: Config.LLMBackoffJitter, 0 (none) by default. A negative
	// value turns jitter off whatever the Config says.
	Jitter float64
	// ProbeLease is how long the half-open probe may run before another
	// caller may probe: Config.LLMProbeLease, 30s by default.
	ProbeLease time.Duration
	// IsFailure tells Do whether a non-nil error from its function is the
	// endpoint's failure. By default every error is, except one wrapping
	// context.Canceled. Do never asks when the caller's own context has
	// ended: that outcome is not counted either way.
	IsFailure func(error) bool
}

// resolve fills zero fields from cfg and checks the result.
func (s BackoffSettings) resolve(cfg *Config) (BackoffSettings, error) {
	s.RetryDelay = cmp.Or(s.RetryDelay, cfg.LLMRetryDelay)
	s.Multiplier = cmp.Or(s.Multiplier, cfg.LLMBackoffMultiplier)
	s.Max = cmp.Or(s.Max, cfg.LLMBackoffMax)
	switch {
	case s.Jitter == 0:
		s.Jitter = cfg.LLMBackoffJitter
	case s.Jitter < 0:
		s.Jitter = 0
	}
	s.ProbeLease = cmp.Or(s.ProbeLease, cfg.LLMProbeLease)
	if s.IsFailure == nil {
		s.IsFailure = defaultIsFailure
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: BackoffSettings.%s "+format, append([]any{ErrInvalidArgument, field}, args...)...))
	}
	const day = 24 * time.Hour
	if s.RetryDelay < time.Millisecond || s.RetryDelay > day {
		bad("RetryDelay", "must be between 1ms and 24h, got %v", s.RetryDelay)
	}
	if math.IsNaN(s.Multiplier) || s.Multiplier < 1 || s.Multiplier > 100 {
		bad("Multiplier", "must be between 1 and 100, got %g", s.Multiplier)
	}
	if s.Max < time.Millisecond || s.Max > day {
		bad("Max", "must be between 1ms and 24h, got %v", s.Max)
	} else if s.Max < s.RetryDelay {
		bad("Max", "(%v) must be at least RetryDelay (%v)", s.Max, s.RetryDelay)
	}
	if math.IsNaN(s.Jitter) || s.Jitter > 1 {
		bad("Jitter", "must be between 0 and 1, got %g", s.Jitter)
	}
	if s.ProbeLease < time.Millisecond || s.ProbeLease > day {
		bad("ProbeLease", "must be between 1ms and 24h, got %v", s.ProbeLease)
	}
	return s, errors.Join(errs...)
}

// Backoff returns the breaker named name, which namespaces its keys ("llm",
// say). Handles with the same name on the same Limiter share all state; give
// them the same settings. An invalid name (empty, longer than MaxNameLen, not
// UTF-8, or holding '{' or '}') is ErrInvalidName; invalid settings are
// ErrInvalidArgument naming the field.
func (l *Limiter) Backoff(name string, s BackoffSettings) (*Backoff, error) {
	if err := l.validPolicy("Backoff", "backoff", name); err != nil {
		return nil, err
	}
	if strings.ContainsAny(name, "{}") {
		return nil, fmt.Errorf("%w: backoff name %q holds '{' or '}', which would break its hash tag", ErrInvalidName, name)
	}
	set, err := s.resolve(&l.cfg)
	if err != nil {
		return nil, err
	}
	return &Backoff{l: l, name: name, set: set, local: l.fallback.breaker(name), keys: l.key("e", name, ":"),
		jitter: rand.Float64, now: time.Now, token: newToken}, nil
}

// Name returns the Backoff's name.
func (b *Backoff) Name() string {
	if b == nil {
		return ""
	}
	return b.name
}

// key is the state hash of endpoint: b.keys, built once, and the
// endpoint, one allocation on every Check and report.
func (b *Backoff) key(endpoint string) string { return b.keys + endpoint }

func (b *Backoff) validate(endpoints ...string) error {
	switch {
	case b == nil:
		return fmt.Errorf("%w: nil Backoff; use Limiter.Backoff", ErrInvalidArgument)
	case b.l == nil || b.local == nil:
		return fmt.Errorf("%w: zero Backoff; use Limiter.Backoff", ErrInvalidArgument)
	}
	for _, e := range endpoints {
		if err := validName("endpoint", e); err != nil {
			return err
		}
	}
	return nil
}

// Check reports whether a caller may use endpoint now. Allowed means the
// endpoint is closed (Remaining is Unlimited) or it is half-open and this
// caller now holds its single probe (Probe is true, Token names it,
// ResetAfter is the probe's lease). Either way the caller makes its request
// and reports the outcome with Success or Failure, or, with no verdict (the
// request was cancelled), hands a probe back with Abandon; Do does all of
// this. The probe holder itself is denied if it checks again. Denied
// decisions carry ReasonBackoff (open) or ReasonProbing (another caller
// holds the probe), Remaining 0, and RetryAfter (equal to ResetAfter, at
// least 1ms), the time until that changes.
//
// While Redis cannot be reached the decision follows
// Config.BackoffOnRedisError and is marked Degraded, with a nil error:
// FailLocal runs the same breaker in this process (fed by this process's
// reports), FailOpen allows, FailClosed denies with ReasonRedisDown for
// 1s (see FailClosed). Other
// Redis errors are returned; a key holding data Floodgate did not write
// gives ErrForeignKey.
func (b *Backoff) Check(ctx context.Context, endpoint string) (Decision, error) {
	if err := b.validate(endpoint); err != nil {
		return Decision{}, err
	}
	_, d, err := b.check(ctx, []string{endpoint})
	return d, err
}

// Wait blocks until Check allows endpoint (closed, or this caller now holds
// the probe), sleeping each RetryAfter, or until ctx ends. Like
// x/time/rate's Wait it fails at once, wrapping context.DeadlineExceeded,
// when the wait would pass ctx's deadline. Chat replies rarely wait out a
// backoff (Pick a fallback instead); queued work may.
func (b *Backoff) Wait(ctx context.Context, endpoint string) (Decision, error) {
	if err := b.validate(endpoint); err != nil {
		return Decision{}, err
	}
	return waitFor(ctx, fmt.Sprintf("endpoint %q", endpoint), func() (Decision, error) { return b.Check(ctx, endpoint) })
}

// Pick returns the first of endpoints, in order, that Check would allow,
// with its Decision, in one round trip: a bot's fallback from a local model
// to OpenAI is Pick(ctx, local, openai). A half-open endpoint whose probe is
// free counts as usable (the caller becomes its probe: Probe and Token are
// set, as from Check), so the preferred endpoint comes back into use as soon
// as it works. When none is usable it returns "" and a denied Decision whose
// RetryAfter is the shortest wait until one may be, with that endpoint's
// Reason. It takes 1 to MaxPickEndpoints endpoints (else
// ErrInvalidArgument).
func (b *Backoff) Pick(ctx context.Context, endpoints ...string) (string, Decision, error) {
	if len(endpoints) == 0 || len(endpoints) > MaxPickEndpoints {
		return "", Decision{}, fmt.Errorf("%w: Pick takes 1 to %d endpoints, got %d", ErrInvalidArgument, MaxPickEndpoints, len(endpoints))
	}
	if err := b.validate(endpoints...); err != nil {
		return "", Decision{}, err
	}
	i, d, err := b.check(ctx, endpoints)
	if err != nil || i < 0 {
		return "", d, err
	}
	return endpoints[i], d, nil
}

// check runs backoff_check.lua over endpoints and returns the index of the
// one answered for (-1 if none is usable) with its decision.
func (b *Backoff) check(ctx context.Context, endpoints []string) (int, Decision, error) {
	keys := make([]string, len(endpoints))
	for i, e := range endpoints {
		keys[i] = b.key(e)
	}
	token := b.token()
	r, err := b.l.run(ctx, backoffCheck, keys, ms(b.set.ProbeLease), ms(b.set.Max), token, ms(b.l.cfg.MaxIdleTime))
	if err != nil {
		i := -1
		mode := b.l.cfg.BackoffOnRedisError
		d, err := b.l.degrade(ctx, PolicyBackoff, mode, err, func() Decision {
			var d Decision
			i, d = b.local.check(b.now(), endpoints, b.set.ProbeLease, b.set.Max, b.l.cfg.MaxIdleTime, token)
			return d
		})
		if err == nil && mode == FailOpen {
			i = 0 // FailOpen allows the first endpoint
		}
		return i, d, err
	}
	if r[0] < 0 || r[0] > int64(len(endpoints)) {
		return -1, Decision{}, fmt.Errorf("limiter: backoff_check replied %v for %d endpoints", r, len(endpoints))
	}
	d := replyDecision(r[1:6])
	if d.Allowed && d.Remaining == 0 {
		d.Probe, d.Token = true, token
	}
	return int(r[0]) - 1, b.l.observe(PolicyBackoff, d), nil
}

// Failure reports that a request to endpoint failed (an error or timeout
// from the LLM, not a bad prompt). From closed or half-open it opens the
// endpoint (half-open: whoever reports it, with the next, longer delay);
// while open it is stale, from a request admitted before the endpoint
// opened, and is counted without extending or growing the delay. It returns
// a denied Decision with ReasonBackoff whose RetryAfter is the wait now in
// force: the new delay, or the rest of the current open period.
//
// While Redis cannot be reached: FailLocal records the failure in the
// per-process fallback and returns its decision, FailOpen returns an
// allowing decision, FailClosed one with ReasonRedisDown; all Degraded,
// with a nil error. Other Redis errors are returned; a key holding data
// Floodgate did not write gives ErrForeignKey.
func (b *Backoff) Failure(ctx context.Context, endpoint string) (Decision, error) {
	if err := b.validate(endpoint); err != nil {
		return Decision{}, err
	}
	sc := b.sched()
	cut := jitterCut(b.set.Jitter, b.jitter)
	r, err := b.l.run(ctx, backoffFailure, []string{b.key(endpoint)}, sc.base, sc.multPPM, sc.max, cut, sc.idle)
	if err != nil {
		if !isOutage(ctx, err) {
			return Decision{}, err
		}
		// A report, not a decision: not observed.
		return degraded(b.l.cfg.BackoffOnRedisError, func() Decision { return b.local.failure(b.now(), endpoint, sc, cut) }), nil
	}
	if r[1] <= 0 {
		return Decision{}, fmt.Errorf("limiter: backoff_failure replied %v", r)
	}
	w := fromMs(r[1])
	return Decision{Reason: ReasonBackoff, RetryAfter: w, ResetAfter: w}, nil
}

// Success reports that a request to endpoint succeeded: in any state the
// endpoint closes on every replica and its delay starts again from
// RetryDelay. While Redis
// cannot be reached it returns nil (the outage follows BackoffOnRedisError:
// FailLocal closes the endpoint in the per-process fallback); other Redis
// errors are returned; a key holding data Floodgate did not write gives
// ErrForeignKey and is left alone.
func (b *Backoff) Success(ctx context.Context, endpoint string) error {
	if err := b.validate(endpoint); err != nil {
		return err
	}
	// The fallback too, so a later outage does not resurrect an old failure.
	b.local.success(endpoint)
	if _, err := b.l.run(ctx, backoffSuccess, []string{b.key(endpoint)}); err != nil {
		if !isOutage(ctx, err) {
			return err
		}
	}
	return nil
}

// Abandon hands back the half-open probe that token (Decision.Token) names,
// counting neither success nor failure, so the next caller on any replica
// may probe at once instead of waiting out the lease: for a request that was
// cancelled, or never sent. It frees only that probe: when token names none
// (the probe was already reported, its lease ran out and another caller
// took it, or the endpoint closed) it changes nothing and returns nil, as it
// does for an empty token (the caller held no probe). A token not in the
// form Check gives is ErrInvalidArgument.
//
// While Redis cannot be reached it frees the probe in the FailLocal
// fallback, if that is where it came from, and returns nil; other Redis
// errors are returned.
func (b *Backoff) Abandon(ctx context.Context, endpoint, token string) error {
	if err := b.validate(endpoint); err != nil {
		return err
	}
	if token == "" {
		return nil
	}
	if !isToken(token) {
		return fmt.Errorf("%w: %q is not a probe token", ErrInvalidArgument, token)
	}
	b.local.abandon(endpoint, token)
	if _, err := b.l.run(ctx, backoffAbandon, []string{b.key(endpoint)}, token); err != nil {
		if !isOutage(ctx, err) {
			return err
		}
	}
	return nil
}

// Status returns endpoint's shared state in Redis, without changing it.
func (b *Backoff) Status(ctx context.Context, endpoint string) (BackoffStatus, error) {
	if err := b.validate(endpoint); err != nil {
		return BackoffStatus{}, err
	}
	r, err := b.l.run(ctx, backoffState, []string{b.key(endpoint)}, ms(b.set.ProbeLease))
	if err != nil {
		return BackoffStatus{}, err
	}
	if r[0] < 0 || r[0] > int64(StateOpen) {
		return BackoffStatus{}, fmt.Errorf("limiter: backoff_state replied %v", r)
	}
	return BackoffStatus{
		State:      State(r[0]),
		Opens:      int(r[1]),
		Failures:   int(r[2]),
		Delay:      fromMs(r[3]),
		RetryAfter: fromMs(r[4]),
		Probing:    r[5] == 1,
	}, nil
}

// backoffSched is the backoff settings in the scripts' integer units.
type backoffSched struct {
	base, multPPM, max int64 // ms, millionths, ms
	idle               int64 // Config.MaxIdleTime, ms
}

func (b *Backoff) sched() backoffSched {
	return backoffSched{
		base:    max(ms(b.set.RetryDelay), 1),
		multPPM: int64(math.Round(b.set.Multiplier * 1e6)),
		max:     max(ms(b.set.Max), 1),
		idle:    max(ms(b.l.cfg.MaxIdleTime), 1),
	}
}

// next is the nominal delay after prev (0: none yet), as backoff_failure.lua
// computes it: prev times the multiplier, at least base, at most max.
func (s backoffSched) next(prev int64) int64 {
	switch {
	case prev <= 0:
		return s.base
	case prev >= s.max:
		return s.max
	}
	return min(max(prev*s.multPPM/1e6, s.base), s.max)
}

// backoffJittered is how long an open period with nominal delay d lasts given the
// jitter cut in millionths: never less than 1 ms.
func backoffJittered(d, cut int64) int64 {
	return max(d-d*cut/1e6, 1)
}

// jitterCut turns the jitter setting and a random fraction in [0, 1) into
// the cut the scripts take: floor(jitter * frac * 1e6), within 0..999999.
func jitterCut(jitter float64, frac func() float64) int64 {
	if jitter <= 0 {
		return 0
	}
	c := int64(jitter * frac() * 1e6)
	return min(max(c, 0), 999_999)
}
