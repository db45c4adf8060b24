package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// localUsers is the per-user policy run in-process, used while Redis cannot
// be reached and Config.OnRedisError is FailLocal. It applies the same
// cooldown and window to this replica's traffic alone, so N replicas admit
// at most N times the limit during an outage. It starts empty: what a user
// did before the outage is in Redis, out of reach.
//
// Its memory is bounded: at most maxLocalUsers users and maxLocalEntries
// request times (8 bytes each, counted by capacity), about 20 MB in all;
// when full it forgets idle users first (nothing in their window), then
// any sampled one, whose requests it then no longer limits. Once Redis
// answers again it empties itself (redisAnswered).
type localUsers struct {
	cooldown time.Duration
	limit    int
	window   time.Duration
	base     time.Time // the monotonic origin of the stored times

	mu         sync.Mutex
	m          map[string][]int64 // accepted requests, ns since base, oldest first
	entries    int                // sum of the slices' capacities
	maxEntries int
	users      atomic.Int32 // len(m), read on the decision path without mu
	lastUse    atomic.Int64 // ns since base of the latest allow
}

const (
	maxLocalUsers   = 100_000
	maxLocalEntries = 1 << 20
	// localIdleDrop: once the fallback has gone unused this long, the next
	// answer from Redis empties it.
	localIdleDrop = redisRetryInterval
)

func newLocalUsers(cfg Config) *localUsers {
	return &localUsers{
		cooldown:   cfg.UserCooldown,
		limit:      cfg.MaxRequestsPerUserHour,
		window:     cfg.UserWindow,
		base:       time.Now(),
		m:          make(map[string][]int64),
		maxEntries: maxLocalEntries,
	}
}

// allow mirrors user_allow.lua on the local clock.
func (lu *localUsers) allow(user string, now time.Time) Decision {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	at := int64(now.Sub(lu.base))
	lu.lastUse.Store(at)
	span := lu.window
	if lu.limit == 0 {
		span = lu.cooldown
	}
	times, known := lu.m[user]
	live := times[:0]
	for _, t := range times {
		if time.Duration(at-t) < span {
			live = append(live, t)
		}
	}
	remaining := Unlimited
	var cwait, wwait time.Duration
	if n := len(live); n > 0 && lu.cooldown > 0 {
		cwait = lu.cooldown - time.Duration(at-live[n-1])
	}
	if lu.limit > 0 {
		remaining = max(lu.limit-len(live), 0)
		if len(live) >= lu.limit {
			wwait = lu.window - time.Duration(at-live[len(live)-lu.limit])
		}
	}
	if cwait > 0 || wwait > 0 {
		lu.m[user] = live
		d := Decision{Reason: ReasonCooldown, RetryAfter: cwait, Remaining: remaining}
		if wwait > cwait {
			d.Reason, d.RetryAfter = ReasonWindow, wwait
		}
		d.ResetAfter = span - time.Duration(at-live[len(live)-1])
		atLeastMinWait(&d)
		return d
	}
	lu.entries -= cap(times)
	live = append(live, at)
	lu.entries += cap(live)
	lu.m[user] = live
	if !known {
		lu.users.Add(1)
	}
	for len(lu.m) > maxLocalUsers || lu.entries > lu.maxEntries {
		if !lu.evict(at, span, user) {
			break
		}
	}
	if lu.limit > 0 {
		remaining--
	}
	return Decision{Allowed: true, Remaining: remaining, ResetAfter: span}
}

// evict forgets one user other than keep: an idle one among a sample if
// any, else the last sampled. It reports whether it found one.
func (lu *localUsers) evict(at int64, span time.Duration, keep string) bool {
	victim := ""
	seen := 0
	for u, times := range lu.m {
		if u == keep {
			continue
		}
		victim = u
		if len(times) == 0 || time.Duration(at-times[len(times)-1]) >= span {
			break
		}
		if seen++; seen >= denySample {
			break
		}
	}
	if victim == "" {
		return false
	}
	lu.forget(victim)
	return true
}

// forget drops user; mu is held.
func (lu *localUsers) forget(user string) {
	times, ok := lu.m[user]
	if !ok {
		return
	}
	lu.entries -= cap(times)
	delete(lu.m, user)
	lu.users.Add(-1)
}

func (lu *localUsers) reset(user string) {
	lu.mu.Lock()
	lu.forget(user)
	lu.mu.Unlock()
}

// redisAnswered is told that Redis decided for user at now: its fallback
// entry is stale, and once the whole fallback has gone unused for
// localIdleDrop (Redis is back for every node), all of it goes. It costs
// one atomic load while the fallback is empty.
func (lu *localUsers) redisAnswered(user string, now time.Time) {
	if lu.users.Load() == 0 {
		return
	}
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if time.Duration(int64(now.Sub(lu.base))-lu.lastUse.Load()) >= localIdleDrop {
		lu.m = make(map[string][]int64)
		lu.entries = 0
		lu.users.Store(0)
		return
	}
	lu.forget(user)
}

// userFallback applies Config.OnRedisError when err means Redis is out of
// reach (degrade); any other error is returned as is. When the caller's
// own context ended, the error wraps its context's error and names the
// user, quoted.
func (l *Limiter) userFallback(ctx context.Context, user string, err error) (Decision, error) {
	if cerr := callerDone(ctx); cerr != nil {
		var left *callerLeft
		if errors.As(err, &left) {
			return Decision{}, fmt.Errorf("limiter: allow %q: %w", user, err)
		}
		return Decision{}, fmt.Errorf("limiter: allow %q: %w", user, cerr)
	}
	return l.degrade(ctx, PolicyUser, l.cfg.OnRedisError, err, func() Decision { return l.local.allow(user, time.Now()) })
}
