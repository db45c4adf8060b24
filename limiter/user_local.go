package limiter

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// localUsers is the per-user policy run in-process, used while Redis cannot
// be reached and Config.OnRedisError is FailLocal. It applies the same
// cooldown and window to this replica's traffic, starting from what Redis
// last told this replica about the user: how many requests its window
// held and when the newest was (all of them taken, conservatively, to be
// as young as the newest). What it admits on its own it keeps until the
// window has passed, Redis back or not, and a request of a user it still
// holds such admissions for is checked against them before Redis is asked
// (precheck): Redis does not know about them.
//
// So, for each user, every request this replica admits (through Redis or
// on its own) finds fewer than the limit among what Redis last reported
// plus what the replica admitted alone, inside the window: one replica
// never admits more than the limit per window, whatever the number of
// outages, and N replicas at most N times the limit (each one's own
// admissions plus the ones Redis counted for it). The cooldown holds the
// same way. What it remembers is bounded (below); a user it has forgotten
// starts again from what Redis says next, or from nothing during an outage.
//
// Its memory is bounded: at most maxLocalUsers users and maxLocalEntries
// request times (8 bytes each, counted by capacity), about 20 MB in all,
// split into shards; when a shard is full it forgets an idle user first
// (nothing in its window), then one without local admissions, then any
// sampled one.
type localUsers struct {
	cooldown time.Duration
	limit    int
	window   time.Duration
	span     time.Duration // how long an accepted request matters
	base     time.Time     // the monotonic origin of the stored times
	off      bool          // OnRedisError is not FailLocal: nothing to record

	seed       maphash.Seed
	shards     [denyShards]localShard
	maxUsers   int          // per shard
	maxEntries int          // per shard
	users      atomic.Int32 // users held, all shards
	pending    atomic.Int32 // users holding local admissions, read without a lock
}

type localShard struct {
	mu      sync.Mutex
	m       map[string]*localUser
	entries int // sum of the times' capacities
}

// localUser is what one replica knows about one user.
type localUser struct {
	// seen is how many accepted requests Redis held in the user's window
	// at its last answer (0 or 1 without a window), the newest at
	// seenNewest (ns since base).
	seen       int
	seenNewest int64
	// times are the requests this replica admitted on its own, ns since
	// base, oldest first, kept until they leave the window.
	times []int64
}

const (
	maxLocalUsers   = 100_000
	maxLocalEntries = 1 << 20
)

func newLocalUsers(cfg Config) *localUsers {
	lu := &localUsers{
		cooldown:   cfg.UserCooldown,
		limit:      cfg.MaxRequestsPerUserHour,
		window:     cfg.UserWindow,
		span:       cfg.UserWindow,
		base:       time.Now(),
		off:        cfg.OnRedisError != FailLocal,
		seed:       maphash.MakeSeed(),
		maxUsers:   (maxLocalUsers + denyShards - 1) / denyShards,
		maxEntries: (maxLocalEntries + denyShards - 1) / denyShards,
	}
	if lu.limit == 0 {
		lu.span = cfg.UserCooldown
	}
	for i := range lu.shards {
		lu.shards[i].m = make(map[string]*localUser)
	}
	return lu
}

func (lu *localUsers) shard(user string) *localShard {
	return &lu.shards[maphash.String(lu.seed, user)%denyShards]
}

func (lu *localUsers) at(now time.Time) int64 { return int64(now.Sub(lu.base)) }

// decide is the policy on what u holds at at: the decision a request
// would get, without recording it. It drops u's times that have left the
// window; the shard's lock is held.
func (lu *localUsers) decide(s *localShard, u *localUser, at int64) Decision {
	span := int64(lu.span)
	live := u.times[:0]
	for _, t := range u.times {
		if at-t < span {
			live = append(live, t)
		}
	}
	if len(live) == 0 && cap(u.times) > 0 {
		s.entries -= cap(u.times)
		lu.pending.Add(-1)
		live = nil
	}
	u.times = live
	seen := 0
	if u.seen > 0 && at-u.seenNewest < span {
		seen = u.seen
	}
	count := seen + len(live)
	if count == 0 {
		return Decision{Allowed: true, Remaining: lu.remaining(0)}
	}
	newest := u.seenNewest
	if n := len(live); n > 0 && (seen == 0 || live[n-1] > newest) {
		newest = live[n-1]
	}
	var cwait, wwait time.Duration
	if lu.cooldown > 0 {
		cwait = lu.cooldown - time.Duration(at-newest)
	}
	if lu.limit > 0 && count >= lu.limit {
		// The request passes once the (count-limit)-th oldest has aged
		// out; seen requests all count as at seenNewest.
		wwait = lu.window - time.Duration(at-lu.kthOldest(seen, u.seenNewest, live, count-lu.limit))
	}
	if cwait <= 0 && wwait <= 0 {
		return Decision{Allowed: true, Remaining: lu.remaining(count)}
	}
	d := Decision{Reason: ReasonCooldown, RetryAfter: cwait, Remaining: max(lu.remaining(count), 0)}
	if lu.limit == 0 {
		d.Remaining = Unlimited
	}
	if wwait > cwait {
		d.Reason, d.RetryAfter = ReasonWindow, wwait
	}
	d.ResetAfter = lu.span - time.Duration(at-newest)
	atLeastMinWait(&d)
	return d
}

// remaining is what the window still admits with count requests held
// (before the one being decided).
func (lu *localUsers) remaining(count int) int {
	if lu.limit == 0 {
		return Unlimited
	}
	return lu.limit - count
}

// kthOldest is the k-th oldest (0-based) of seen requests at seenAt and
// the sorted times.
func (lu *localUsers) kthOldest(seen int, seenAt int64, times []int64, k int) int64 {
	i := 0
	for {
		if seen > 0 && (i == len(times) || seenAt <= times[i]) {
			if k < seen {
				return seenAt
			}
			k -= seen
			seen = 0
			continue
		}
		if k == 0 {
			return times[i]
		}
		k--
		i++
	}
}

// allow is the fallback's decision for user at now, recorded when it
// admits.
func (lu *localUsers) allow(user string, now time.Time) Decision {
	at := lu.at(now)
	s := lu.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := lu.get(s, user, at)
	d := lu.decide(s, u, at)
	if !d.Allowed {
		return d
	}
	if len(u.times) == 0 {
		lu.pending.Add(1)
	}
	s.entries -= cap(u.times)
	u.times = append(u.times, at)
	s.entries += cap(u.times)
	for len(s.m) > lu.maxUsers || s.entries > lu.maxEntries {
		if !lu.evict(s, at, user, s.entries > lu.maxEntries) {
			break
		}
	}
	if lu.limit > 0 {
		d.Remaining--
	}
	d.ResetAfter = lu.span
	return d
}

// precheck answers, while Redis is reachable, a request of a user this
// replica admitted on its own within the window: Redis does not know
// about those, so when they (with what Redis last said) deny, the
// replica denies without asking. It reports false, at the cost of one
// atomic load, when no user holds such admissions, and whenever Redis
// should decide.
func (lu *localUsers) precheck(user string, now time.Time) (Decision, bool) {
	if lu.pending.Load() == 0 {
		return Decision{}, false
	}
	s := lu.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.m[user]
	if u == nil || len(u.times) == 0 {
		return Decision{}, false
	}
	d := lu.decide(s, u, lu.at(now))
	if d.Allowed {
		return Decision{}, false
	}
	d.Cached = true
	return d, true
}

// redisSaid records Redis's decision d for user, just received: how
// many requests its window holds and when the newest was, worked back
// from Remaining and ResetAfter (now is after Redis decided, so the
// newest comes out no earlier than it was: the fallback errs strict).
// Without FailLocal it costs a branch, not a clock read.
func (lu *localUsers) redisSaid(user string, d Decision) {
	if lu.off {
		return
	}
	now := time.Now()
	seen, newest := 1, now.Add(d.ResetAfter-lu.span)
	if lu.limit > 0 {
		seen = lu.limit - d.Remaining
	}
	s := lu.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.m[user]
	if u == nil {
		if seen <= 0 {
			return
		}
		at := lu.at(now)
		u = lu.get(s, user, at)
		for len(s.m) > lu.maxUsers {
			if !lu.evict(s, at, user, false) {
				break
			}
		}
	}
	u.seen, u.seenNewest = seen, lu.at(newest)
}

// get returns user's entry, made empty when missing; the shard's lock is
// held.
func (lu *localUsers) get(s *localShard, user string, at int64) *localUser {
	u := s.m[user]
	if u == nil {
		u = &localUser{seenNewest: at - int64(lu.span)}
		s.m[user] = u
		lu.users.Add(1)
	}
	return u
}

// evict forgets one user of s other than keep, among a sample: an idle
// one (nothing in its window) if any, else one that frees what is over
// the bound (request times when forEntries, else a user without local
// admissions, whose loss costs least), else the last sampled. It reports
// whether it found one.
func (lu *localUsers) evict(s *localShard, at int64, keep string, forEntries bool) bool {
	span := int64(lu.span)
	victim, sampled := "", 0
	for name, u := range s.m {
		if name == keep {
			continue
		}
		has := len(u.times) > 0
		if at-u.seenNewest >= span && (!has || at-u.times[len(u.times)-1] >= span) && (has || !forEntries) {
			victim = name
			break
		}
		if victim == "" || has == forEntries {
			victim = name
		}
		if sampled++; sampled >= denySample {
			break
		}
	}
	if victim == "" {
		return false
	}
	lu.forget(s, victim)
	return true
}

// forget drops user; the shard's lock is held.
func (lu *localUsers) forget(s *localShard, user string) {
	u, ok := s.m[user]
	if !ok {
		return
	}
	if len(u.times) > 0 {
		lu.pending.Add(-1)
	}
	s.entries -= cap(u.times)
	delete(s.m, user)
	lu.users.Add(-1)
}

// reset forgets user (Limiter.Reset, Import: Redis's state was replaced).
func (lu *localUsers) reset(user string) {
	s := lu.shard(user)
	s.mu.Lock()
	lu.forget(s, user)
	s.mu.Unlock()
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
