package limiter

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// denyCache remembers, per process, users Redis has just denied and until
// when, so their repeat requests (most of a spammer's traffic) are answered
// without a round trip.
//
// It can only deny, never admit, so it cannot over-admit. It never denies
// past what Redis said: an entry ends at the instant the request was SENT
// plus RetryAfter, which is no later than Redis's own answer, and it is
// measured on the monotonic clock, immune to wall-clock jumps. A lookup
// counts down from the clock read under the entry's lock, not only from
// its caller's instant (which may be stale: a caller descheduled after
// reading it while another's later denial refreshed the entry), and a
// cached RetryAfter never exceeds the one Redis gave. Its last
// millisecond is left to Redis, so every cached RetryAfter is at least
// 1 ms. Reset and Import on this replica drop the entry and fence off
// denials still in flight; other replicas keep denying the user at most
// until the RetryAfter Redis gave them.
//
// Memory is bounded: 64 shards each hold at most size/64 entries, rounded
// up (so the bound is size rounded up to a multiple of 64); a full shard
// first drops expired entries among a few it samples, then the one among
// them that would expire soonest.
type denyCache struct {
	seed   maphash.Seed
	shards [denyShards]denyShard
	per    int
	// lastReset fences off denials sent before the latest Reset (of any
	// user: cheaper than remembering each, and it only skips caching).
	created   time.Time
	lastReset atomic.Int64 // ns since created
	// clock is time.Now; tests replace it.
	clock func() time.Time
}

const (
	// minRetryAfter is the least wait a denial carries.
	minRetryAfter = time.Millisecond
	denyShards    = 64
	// denySample is how many entries a full shard looks at to evict one,
	// as Redis samples keys for its own eviction.
	denySample = 8
)

type denyShard struct {
	mu sync.Mutex
	m  map[string]denyEntry
}

type denyEntry struct {
	until time.Time // monotonic
	d     Decision
}

func newDenyCache(size int) *denyCache {
	if size <= 0 {
		return nil
	}
	c := &denyCache{seed: maphash.MakeSeed(), per: max((size+denyShards-1)/denyShards, 1), created: time.Now(), clock: time.Now}
	for i := range c.shards {
		c.shards[i].m = make(map[string]denyEntry)
	}
	return c
}

func (c *denyCache) shard(user string) *denyShard {
	return &c.shards[maphash.String(c.seed, user)%denyShards]
}

// get returns the cached denial for user with RetryAfter and ResetAfter
// counted down to now (or to the clock, when later: now may be stale), or
// false.
func (c *denyCache) get(user string, now time.Time) (Decision, bool) {
	s := c.shard(user)
	s.mu.Lock()
	e, ok := s.m[user]
	var left time.Duration
	if ok {
		// Read after the entry: no later than any put it holds.
		if t := c.clock(); t.After(now) {
			now = t
		}
		left = min(e.until.Sub(now), e.d.RetryAfter)
		// Less than a millisecond left: Redis answers instead, so a cached
		// RetryAfter is never below 1 ms (nor 0 once rounded to milliseconds).
		if left < minRetryAfter {
			delete(s.m, user)
			ok = false
		}
	}
	s.mu.Unlock()
	if !ok {
		return Decision{}, false
	}
	d := e.d
	d.ResetAfter -= d.RetryAfter - left
	d.RetryAfter = left
	d.Cached = true
	return d, true
}

// put remembers that user was denied with d by a request sent at sent.
func (c *denyCache) put(user string, sent time.Time, d Decision) {
	if d.Allowed || d.RetryAfter <= 0 || int64(sent.Sub(c.created)) < c.lastReset.Load() {
		return
	}
	until := sent.Add(d.RetryAfter)
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[user]; !ok && len(s.m) >= c.per {
		s.evict(sent)
	}
	s.m[user] = denyEntry{until: until, d: d}
}

// evict drops expired entries among a sample, or else the soonest to expire.
func (s *denyShard) evict(now time.Time) {
	var victim string
	var soonest time.Time
	seen, freed := 0, false
	for u, e := range s.m {
		if !now.Before(e.until) {
			delete(s.m, u)
			freed = true
		} else if victim == "" || e.until.Before(soonest) {
			victim, soonest = u, e.until
		}
		if seen++; seen >= denySample {
			break
		}
	}
	if !freed && victim != "" {
		delete(s.m, victim)
	}
}

// reset drops user's entry and refuses denials sent before now. The fence
// only moves forward: a Reset that read the clock earlier but stores
// later must not reopen it for denials sent in between.
func (c *denyCache) reset(user string, now time.Time) {
	at := int64(now.Sub(c.created))
	for {
		old := c.lastReset.Load()
		if at <= old || c.lastReset.CompareAndSwap(old, at) {
			break
		}
	}
	c.drop(user)
}

func (c *denyCache) drop(user string) {
	s := c.shard(user)
	s.mu.Lock()
	delete(s.m, user)
	s.mu.Unlock()
}

// len counts entries, expired or not (for tests and metrics).
func (c *denyCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].m)
		c.shards[i].mu.Unlock()
	}
	return n
}
