// Package limiter is Floodgate: a Redis-backed rate limiter shared by every
// replica of a chat bot that answers users through an LLM.
//
// One Limiter, built by New from any redis.UniversalClient (single node,
// Sentinel or Cluster), holds five policies:
//
//   - Allow: a per-user cooldown and a per-user sliding-window limit
//     (10 s and 20 per hour by default), decided in one Lua script;
//   - Backoff: LLM endpoint failures with exponential backoff and a single
//     half-open probe across all replicas;
//   - Bucket: external API rates (GCRA);
//   - Slots: a cap on users served at once, as expiring leases;
//   - Budget: LLM tokens (units) per user in a sliding window, reserved
//     before a call and settled after it.
//
// The defaults (DefaultConfig) come from the rate_limiting: block of the
// config.yaml of the Python Twitch bot Floodgate was written for; each
// Config field names the setting it replaces. cmd/loadgen measures the
// Redis memory each user costs.
//
// Every decision is one round trip to Redis, reads the clock from Redis
// TIME (so replicas with skewed clocks agree) and either applies all of its
// effects or none. Every key carries a TTL, so idle users cost nothing and
// no sweeper is needed. A Limiter is safe for concurrent use. Every call
// returns by its context's deadline (see Config.RedisTimeout and New),
// except Backoff.Do and Slots.Acquire, which may take a bounded moment
// longer to leave things tidy (see each).
//
// Where things are: the policies in user.go, backoff.go, bucket.go,
// slots.go and budget.go; the one Redis call path in redis.go, with health.go (a node
// that stopped answering is skipped for a while) and errors.go (what an
// error means); keys.go builds keys; coalesce.go groups concurrent Allow
// calls into pipelines; the *_local.go files decide per process while
// Redis is out of reach.
package limiter

import (
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

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
	// user_local.go, coalesce.go).
	cache   *denyCache
	local   *localUsers
	batcher batcher
	// Per-process fallbacks of Backoff, Bucket and Slots (local.go).
	fallback localState
	// user_allow's ARGV, prepared once, and whether one call may carry
	// many users' keys (not on a Cluster).
	userArgs []any
	multiKey bool
	// user_allow_one's command line, prepared once (user_one.go), and the
	// Background contexts bounded by RedisTimeout that calls share
	// (redis.go).
	oneArgs  oneArgs
	timeouts sharedTimeout
	// The last check of Redis's maxmemory-policy (eviction.go).
	eviction evictionState
}

// New returns a Limiter using rdb with cfg, after cfg.Validate. It does not
// wait for Redis; scripts load on first use and again after a restart
// (NOSCRIPT). In the background it reads Redis's maxmemory-policy once
// (CheckEviction, bounded by RedisTimeout) and logs a warning when Redis
// can evict Floodgate's keys. Calls return by their context's deadline only if rdb
// honours context deadlines (ContextTimeoutEnabled, as NewClient sets);
// each round trip is also bounded by Config.RedisTimeout.
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
	l.startEvictionCheck()
	return l, nil
}

// Config returns the settings the Limiter runs with.
func (l *Limiter) Config() Config { return l.cfg }

// usable reports errNilLimiter for a nil or zero Limiter.
func (l *Limiter) usable() error {
	if l == nil || l.rdb == nil {
		return errNilLimiter
	}
	return nil
}
