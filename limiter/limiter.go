// Package limiter is Floodgate: a Redis-backed rate limiter shared by every
// replica of a chat bot that answers users through an LLM.
//
// One Limiter, built by New from any redis.UniversalClient (single node,
// Sentinel or Cluster), holds the policies of the seed's RateLimiter:
//
//   - Allow: a per-user cooldown and a per-user sliding-window limit
//     (10 s and 20 per hour by default), decided in one Lua script;
//   - Backoff: LLM endpoint failures with exponential backoff and a single
//     half-open probe across all replicas;
//   - Bucket: external API rates (GCRA);
//   - Slots: a cap on users served at once, as expiring leases.
//
// Every decision is one round trip to Redis, reads the clock from Redis
// TIME (so replicas with skewed clocks agree) and either applies all of its
// effects or none. Every key carries a TTL, so idle users cost nothing and
// no sweeper is needed. A Limiter is safe for concurrent use.
package limiter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/scripts/lua"
)

// Errors with stated contracts; test them with errors.Is.
var (
	// ErrInvalidUser: a user id is empty or longer than MaxUserLen bytes.
	// Nothing was sent to Redis.
	ErrInvalidUser = errors.New("limiter: invalid user id")
	// ErrInvalidName: an endpoint, API or slot-pool name is empty, longer
	// than MaxNameLen bytes or not valid UTF-8. Nothing was sent to Redis.
	ErrInvalidName = errors.New("limiter: invalid name")
	// ErrInvalidArgument: a numeric argument (rate, burst, size, lease, n)
	// is out of range. Nothing was sent to Redis.
	ErrInvalidArgument = errors.New("limiter: invalid argument")
	// ErrForeignKey: a key under Floodgate's prefix holds data Floodgate did
	// not write (another program shares the prefix). That request fails;
	// nothing was written.
	ErrForeignKey = errors.New("limiter: key holds data Floodgate did not write (does another program use the prefix?)")
	// ErrRedisUnavailable wraps the Redis error when a policy fails closed
	// or cannot decide without Redis.
	ErrRedisUnavailable = errors.New("limiter: redis unavailable")
)

// errNilLimiter: a method was called on a nil or zero Limiter.
var errNilLimiter = fmt.Errorf("%w: nil or zero Limiter (build one with New)", ErrInvalidArgument)

// usable reports errNilLimiter for a nil or zero Limiter.
func (l *Limiter) usable() error {
	if l == nil || l.rdb == nil {
		return errNilLimiter
	}
	return nil
}

// Policy names, as given to an Observer.
const (
	PolicyUser    = "user"
	PolicyBackoff = "backoff"
	PolicyBucket  = "bucket"
	PolicySlots   = "slots"
)

// Observer receives what a Limiter does, for metrics. Implementations must
// be safe for concurrent use and fast: they run on the decision path.
type Observer interface {
	// ObserveDecision is called once per decision.
	ObserveDecision(policy string, d Decision)
	// ObserveRedis is called after each Redis round trip with its script
	// or command name, duration and error (nil on success).
	ObserveRedis(op string, took time.Duration, err error)
}

// Limiter holds Floodgate's policies over one Redis. Build it with New; the
// zero value is not usable. It is safe for concurrent use.
type Limiter struct {
	rdb    redis.UniversalClient
	cfg    Config
	prefix string
	obs    Observer

	health health
	nodes  sync.Map // Cluster master address -> *health

	// The per-user policy's in-process parts (user.go, denycache.go,
	// user_local.go, batch.go).
	cache   *denyCache
	local   *localUsers
	batcher batcher
	// Per-process fallbacks of Bucket and Slots (bucket.go).
	fallback localState
	// user_allow's ARGV, prepared once, and whether one call may carry
	// many users' keys (not on a Cluster).
	userArgs []any
	multiKey bool
}

// New returns a Limiter using rdb with cfg, after cfg.Validate. It does not
// contact Redis; scripts load on first use and again after a restart
// (NOSCRIPT). For bounded calls, rdb should honour context deadlines
// (ContextTimeoutEnabled, as NewClient sets): each call gets
// Config.RedisTimeout.
func New(rdb redis.UniversalClient, cfg Config) (*Limiter, error) {
	if rdb == nil {
		return nil, errors.New("limiter: New needs a Redis client, got nil")
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultConfig().KeyPrefix
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{rdb: rdb, cfg: cfg, prefix: cfg.KeyPrefix, obs: cfg.Observer}
	l.health.interval = redisRetryInterval
	l.initUser()
	return l, nil
}

// Config returns the settings the Limiter runs with.
func (l *Limiter) Config() Config { return l.cfg }

// Client returns the Redis client the Limiter uses.
func (l *Limiter) Client() redis.UniversalClient { return l.rdb }

// script is a Lua script from scripts/lua with the name used in metrics.
type script struct {
	name string
	*redis.Script
}

func newScript(file string) script {
	return script{name: strings.TrimSuffix(file, ".lua"), Script: redis.NewScript(lua.Source(file))}
}

// run evaluates s within Config.RedisTimeout (EVALSHA, then EVAL after a
// NOSCRIPT) and returns its integer array reply.
//
// While Redis is marked down (see health) it fails at once with an error
// wrapping ErrRedisUnavailable instead of waiting for another timeout.
func (l *Limiter) run(parent context.Context, s script, keys []string, args ...any) ([]int64, error) {
	// The timeout covers finding the node too: a Cluster client may have
	// to load its slot map first.
	ctx, cancel := context.WithTimeout(parent, l.cfg.RedisTimeout)
	defer cancel()
	h := l.healthOf(ctx, keys[0])
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("limiter: %s on %s: %w", s.name, keys[0], err)
	}
	start := time.Now()
	res, err := s.Run(ctx, l.rdb, keys, args...).Result()
	if l.obs != nil {
		l.obs.ObserveRedis(s.name, time.Since(start), err)
	}
	if err != nil {
		h.failed(parent, err)
		return nil, fmt.Errorf("limiter: %s on %s: %w", s.name, keys[0], err)
	}
	h.ok()
	return int64s(s.name, res)
}

// healthOf returns the health of the Redis node serving key: on a Cluster
// one per master, so a crashed master sends only its own slots' decisions
// to the fallback while the other masters keep deciding; elsewhere the
// Limiter's single one. Finding the master needs no round trip once
// go-redis knows the slot map.
func (l *Limiter) healthOf(ctx context.Context, key string) *health {
	cc, ok := l.rdb.(*redis.ClusterClient)
	if !ok {
		return &l.health
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return &l.health
	}
	addr := node.Options().Addr
	if h, ok := l.nodes.Load(addr); ok {
		return h.(*health)
	}
	h, _ := l.nodes.LoadOrStore(addr, &health{interval: l.health.interval})
	return h.(*health)
}

// health remembers that Redis just failed to answer, so that for
// redisRetryInterval every call falls back at once instead of each waiting
// out Config.RedisTimeout; the first call after the interval tries Redis
// again, and shared limits resume by themselves when it answers. A refused
// or reset connection marks Redis down at once; timeouts only after
// downAfterTimeouts in a row, so one slow answer on a busy machine does
// not send every caller to local limits.
type health struct {
	downUntil atomic.Int64 // UnixNano; 0 when up
	timeouts  atomic.Int32 // consecutive unavailable errors
	interval  time.Duration
}

const (
	// redisRetryInterval is how long calls skip Redis after it was
	// unreachable.
	redisRetryInterval = time.Second
	downAfterTimeouts  = 3
)

func (h *health) check() error {
	until := h.downUntil.Load()
	if until == 0 || time.Now().UnixNano() >= until {
		return nil
	}
	return fmt.Errorf("%w: no answer lately, retrying in %v", ErrRedisUnavailable,
		time.Duration(until-time.Now().UnixNano()).Round(time.Millisecond))
}

// failed marks Redis down when err says it is unreachable, unless the
// caller's own context ended (their deadline, not Redis's fault).
func (h *health) failed(parent context.Context, err error) {
	if !isOutage(parent, err) {
		return
	}
	refused := errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
	if h.timeouts.Add(1) >= downAfterTimeouts || refused {
		h.downUntil.Store(time.Now().Add(h.interval).UnixNano())
	}
}

func (h *health) ok() {
	if h.downUntil.Load() != 0 {
		h.downUntil.Store(0)
	}
	if h.timeouts.Load() != 0 {
		h.timeouts.Store(0)
	}
}

// int64s converts a script's array reply.
func int64s(name string, res any) ([]int64, error) {
	arr, ok := res.([]any)
	if !ok {
		return nil, fmt.Errorf("limiter: %s replied %T, want an array", name, res)
	}
	out := make([]int64, len(arr))
	for i, v := range arr {
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("limiter: %s reply[%d] is %T, want an integer", name, i, v)
		}
		out[i] = n
	}
	return out, nil
}

func (l *Limiter) observe(policy string, d Decision) Decision {
	if l.obs != nil {
		l.obs.ObserveDecision(policy, d)
	}
	return d
}

// IsUnavailable reports whether err means Redis could not be reached or did
// not answer in time (as opposed to Redis answering with an error). Such
// errors trigger a policy's FailureMode.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrRedisUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// Redis answers these while it cannot serve: loading after a restart,
	// a cluster slot without a master, a replica promoted mid-call. Only
	// the server's own reply is read, never our wrapping, which quotes
	// keys and so user ids.
	for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY"} {
		if isRedisReply(err, p) {
			return true
		}
	}
	return false
}

// isOutage reports whether a policy's FailureMode applies to err: Redis is
// out of reach, and the caller's own context has not ended (their
// deadline or cancellation is theirs to see, not an outage).
func isOutage(ctx context.Context, err error) bool {
	return ctx.Err() == nil && IsUnavailable(err)
}

// isRedisReply reports whether err holds an error reply from the server
// that mentions code (WRONGTYPE, LOADING...): at its start, or inside a
// script error that quotes it. Only the reply is read: our wrapping quotes
// keys, which hold user ids.
func isRedisReply(err error, code string) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(re.Error(), code)
}

// ms converts Go durations to the whole milliseconds the scripts use.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// fromMs converts a script's milliseconds back.
func fromMs(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// validUser checks a user id before it becomes part of a key.
func validUser(user string) error {
	if user == "" {
		return fmt.Errorf("%w: empty", ErrInvalidUser)
	}
	if len(user) > MaxUserLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidUser, len(user), MaxUserLen)
	}
	return nil
}

// validName checks an endpoint, API or slot-pool name. Names come from
// configuration, not from chat users, so they must also be valid UTF-8.
func validName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s name", ErrInvalidName, kind)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s name of %d bytes, at most %d", ErrInvalidName, kind, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s name %q is not UTF-8", ErrInvalidName, kind, name)
	}
	return nil
}

// waitFor calls try until it allows, sleeping each RetryAfter on one timer
// (never spinning), and gives up at once when the wait would pass ctx's
// deadline, as x/time/rate's Wait does. what names the limit in errors.
func waitFor(ctx context.Context, what string, try func() (Decision, error)) (Decision, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return Decision{}, fmt.Errorf("limiter: waiting for %s: %w", what, err)
		}
		d, err := try()
		if err != nil || d.Allowed {
			return d, err
		}
		wait := max(d.RetryAfter, time.Microsecond)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return d, fmt.Errorf("limiter: %s: waiting %v would pass the context deadline: %w", what, wait, context.DeadlineExceeded)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("limiter: waiting for %s: %w", what, ctx.Err())
		case <-timer.C:
		}
	}
}
