package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// localUsers is the per-user policy run in-process, used while Redis cannot
// be reached and Config.OnRedisError is FailLocal. It applies the same
// cooldown and window to this replica's traffic alone, so N replicas admit
// at most N times the limit during an outage. It starts empty: what a user
// did before the outage is in Redis, out of reach.
//
// It holds at most maxLocalUsers users; when full it forgets idle users
// first (nothing in their window), then any sampled one.
type localUsers struct {
	cooldown time.Duration
	limit    int
	window   time.Duration

	mu sync.Mutex
	m  map[string][]time.Time // accepted requests, oldest first, monotonic
}

const maxLocalUsers = 100_000

func newLocalUsers(cfg Config) *localUsers {
	return &localUsers{
		cooldown: cfg.UserCooldown,
		limit:    cfg.MaxRequestsPerUserHour,
		window:   cfg.UserWindow,
		m:        make(map[string][]time.Time),
	}
}

// allow mirrors user_allow.lua on the local clock.
func (lu *localUsers) allow(user string, now time.Time) Decision {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	span := lu.window
	if lu.limit == 0 {
		span = lu.cooldown
	}
	times := lu.m[user]
	live := times[:0]
	for _, t := range times {
		if now.Sub(t) < span {
			live = append(live, t)
		}
	}
	remaining := Unlimited
	var cwait, wwait time.Duration
	if n := len(live); n > 0 && lu.cooldown > 0 {
		cwait = live[n-1].Add(lu.cooldown).Sub(now)
	}
	if lu.limit > 0 {
		remaining = max(lu.limit-len(live), 0)
		if len(live) >= lu.limit {
			wwait = live[len(live)-lu.limit].Add(lu.window).Sub(now)
		}
	}
	if cwait > 0 || wwait > 0 {
		lu.m[user] = live
		d := Decision{Reason: ReasonCooldown, RetryAfter: cwait, Remaining: remaining}
		if wwait > cwait {
			d.Reason, d.RetryAfter = ReasonHourly, wwait
		}
		d.ResetAfter = live[len(live)-1].Add(span).Sub(now)
		atLeastMinWait(&d)
		return d
	}
	if _, known := lu.m[user]; !known && len(lu.m) >= maxLocalUsers {
		lu.evict(now, span)
	}
	lu.m[user] = append(live, now)
	if lu.limit > 0 {
		remaining--
	}
	return Decision{Allowed: true, Remaining: remaining, ResetAfter: span}
}

func (lu *localUsers) evict(now time.Time, span time.Duration) {
	var any string
	seen := 0
	for u, times := range lu.m {
		if len(times) == 0 || now.Sub(times[len(times)-1]) >= span {
			delete(lu.m, u)
			return
		}
		any = u
		if seen++; seen >= denySample {
			break
		}
	}
	delete(lu.m, any)
}

func (lu *localUsers) reset(user string) {
	lu.mu.Lock()
	delete(lu.m, user)
	lu.mu.Unlock()
}

// userFallback applies Config.OnRedisError when err means Redis is out of
// reach (degrade); any other error is returned as is. When the caller's
// own context ended, the error wraps its context's error and names the
// user, quoted.
func (l *Limiter) userFallback(ctx context.Context, user string, err error) (Decision, error) {
	if cerr := ctx.Err(); cerr != nil {
		var left *callerLeft
		if errors.As(err, &left) {
			return Decision{}, fmt.Errorf("limiter: allow %q: %w", user, err)
		}
		return Decision{}, fmt.Errorf("limiter: allow %q: %w", user, cerr)
	}
	return l.degrade(ctx, PolicyUser, l.cfg.OnRedisError, err, func() Decision { return l.local.allow(user, time.Now()) })
}
