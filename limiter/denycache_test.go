package limiter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestDenyCacheCountsDown(t *testing.T) {
	c := newDenyCache(100)
	c.clock = func() time.Time { return time.Time{} } // the callers' instants alone
	t0 := time.Now()
	d := Decision{Reason: ReasonCooldown, Remaining: 19, RetryAfter: 6 * time.Second, ResetAfter: time.Hour}
	c.put("u", t0, d)
	for _, tc := range []struct {
		at        time.Duration
		ok        bool
		retry     time.Duration
		resetLeft time.Duration
	}{
		{0, true, 6 * time.Second, time.Hour},
		{2 * time.Second, true, 4 * time.Second, time.Hour - 2*time.Second},
		{6*time.Second - time.Millisecond, true, time.Millisecond, time.Hour - 6*time.Second + time.Millisecond},
		// Its last millisecond is Redis's to answer: never a wait below 1 ms.
		{6*time.Second - time.Millisecond + time.Nanosecond, false, 0, 0},
	} {
		got, ok := c.get("u", t0.Add(tc.at))
		if ok != tc.ok {
			t.Fatalf("at %v: hit=%v, want %v", tc.at, ok, tc.ok)
		}
		if !ok {
			continue
		}
		if !got.Cached || got.Allowed || got.Reason != ReasonCooldown || got.RetryAfter != tc.retry || got.ResetAfter != tc.resetLeft || got.Remaining != 19 {
			t.Fatalf("at %v: %+v", tc.at, got)
		}
	}
	if c.len() != 0 {
		t.Fatal("expired entry not dropped")
	}
	// Allowed decisions and zero waits are never cached.
	c.put("a", t0, Decision{Allowed: true})
	c.put("z", t0, Decision{Reason: ReasonCooldown})
	if c.len() != 0 {
		t.Fatal("cached a decision that is not a denial with a wait")
	}
}

func TestDenyCacheBounded(t *testing.T) {
	const size = 640
	c := newDenyCache(size)
	t0 := time.Now()
	for i := 0; i < 100*size; i++ {
		c.put(fmt.Sprint("user", i), t0, Decision{Reason: ReasonWindow, RetryAfter: time.Duration(i+1) * time.Second})
	}
	if n := c.len(); n > size {
		t.Fatalf("cache holds %d entries, bound %d", n, size)
	}
	// The newest entry survives its own insertion.
	if _, ok := c.get(fmt.Sprint("user", 100*size-1), t0); !ok {
		t.Fatal("the entry just added was evicted")
	}
}

// countingObserver counts Redis round trips.
type countingObserver struct{ redis, cached, degraded int }

func (o *countingObserver) ObserveDecision(_ string, d Decision) {
	if d.Cached {
		o.cached++
	}
	if d.Degraded {
		o.degraded++
	}
}
func (o *countingObserver) ObserveRedis(string, time.Duration, error) { o.redis++ }

func TestAllowUsesDenyCache(t *testing.T) {
	cfg := userConfig(10*time.Second, 20, time.Hour)
	cfg.LocalCacheSize = 1000
	obs := &countingObserver{}
	cfg.Observer = obs
	l, r := newTestLimiter(t, cfg)
	mustAllow(t, l, "spam")
	r.advance(4 * time.Second)
	d := mustAllow(t, l, "spam")
	if d.Allowed || d.Cached || d.RetryAfter != 6*time.Second {
		t.Fatalf("first denial should come from Redis: %+v", d)
	}
	trips := obs.redis
	for i := 0; i < 100; i++ {
		d := mustAllow(t, l, "spam")
		if d.Allowed || !d.Cached || d.Reason != ReasonCooldown || d.RetryAfter > 6*time.Second || d.RetryAfter <= 5*time.Second {
			t.Fatalf("repeat %d: %+v", i, d)
		}
	}
	if obs.redis != trips || obs.cached != 100 {
		t.Fatalf("repeat denials made %d round trips, %d cached", obs.redis-trips, obs.cached)
	}
	// Reset on this replica drops the entry: the next request asks Redis.
	if err := l.Reset(context.Background(), "spam"); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, l, "spam"); !d.Allowed || d.Cached {
		t.Fatalf("after Reset: %+v", d)
	}
}

func BenchmarkDenyCacheHit(b *testing.B) {
	cfg := DefaultConfig()
	r := newTestRedis(b)
	l, err := New(r.rdb, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	users := make([]string, 1000)
	for i := range users {
		users[i] = fmt.Sprint("user_", i)
		l.cache.put(users[i], time.Now(), Decision{Reason: ReasonCooldown, RetryAfter: time.Hour, ResetAfter: time.Hour})
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			d, err := l.Allow(ctx, users[i%len(users)])
			if err != nil || !d.Cached {
				b.Fatalf("%+v %v", d, err)
			}
			i++
		}
	})
	b.ReportMetric(1000, "ns/op_target_max") // the design target: a lookup under 1 µs
}

func TestDenyCacheResetFencesInFlight(t *testing.T) {
	c := newDenyCache(64)
	sent := time.Now()
	c.reset("u", sent.Add(time.Millisecond))
	c.put("u", sent, Decision{Reason: ReasonCooldown, RetryAfter: time.Hour})
	if _, ok := c.get("u", sent.Add(2*time.Millisecond)); ok {
		t.Fatal("a denial sent before Reset was cached after it")
	}
	c.put("u", sent.Add(3*time.Millisecond), Decision{Reason: ReasonCooldown, RetryAfter: time.Hour})
	if _, ok := c.get("u", sent.Add(4*time.Millisecond)); !ok {
		t.Fatal("a denial sent after Reset was not cached")
	}
}

// TestDenyCacheNeverZeroWait: whatever the instants, a cached denial says
// to wait at least 1 ms, also once rounded down to whole milliseconds.
func TestDenyCacheNeverZeroWait(t *testing.T) {
	c := newDenyCache(1000)
	t0 := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	hits := 0
	for i := 0; i < 100_000; i++ {
		u := fmt.Sprint("u", i%50)
		if i%3 == 0 {
			c.put(u, t0.Add(time.Duration(rng.Int64N(int64(time.Second)))),
				Decision{Reason: ReasonCooldown, RetryAfter: time.Duration(1+rng.Int64N(20)) * time.Millisecond, ResetAfter: time.Minute})
			continue
		}
		d, ok := c.get(u, t0.Add(time.Duration(rng.Int64N(int64(time.Second)))))
		if !ok {
			continue
		}
		hits++
		if d.RetryAfter < time.Millisecond || d.RetryAfter.Milliseconds() == 0 || d.ResetAfter < d.RetryAfter {
			t.Fatalf("cached denial %+v: RetryAfter under 1 ms", d)
		}
	}
	if hits == 0 {
		t.Fatal("no cache hit: the test tested nothing")
	}
}

// TestDenialsWaitAtLeastAMillisecond: a denial read from Redis with a wait
// of 0 (a key in its last millisecond) and one from the per-process
// fallback a nanosecond before the cooldown ends both carry 1 ms.
func TestDenialsWaitAtLeastAMillisecond(t *testing.T) {
	d, err := userDecision([]int64{0, int64(ReasonCooldown), 19, 0, 0})
	if err != nil || d.RetryAfter != time.Millisecond || d.ResetAfter != time.Millisecond {
		t.Fatalf("Redis denial with a 0 wait became %+v, %v; want 1 ms", d, err)
	}
	lu := newLocalUsers(userConfig(time.Second, 0, time.Hour))
	t0 := time.Now()
	lu.allow("u", t0)
	if d := lu.allow("u", t0.Add(time.Second-time.Nanosecond)); d.Allowed || d.RetryAfter != time.Millisecond {
		t.Fatalf("fallback denial 1 ns before the end: %+v, want a 1 ms wait", d)
	}
}

// TestResetFenceOnlyMovesForward: two Resets finishing out of order must
// not let a denial sent between them into the cache.
func TestResetFenceOnlyMovesForward(t *testing.T) {
	c := newDenyCache(100)
	t0 := time.Now()
	c.reset("a", t0.Add(2*time.Second))
	c.reset("b", t0.Add(time.Second)) // read the clock earlier, stored later
	c.put("x", t0.Add(1500*time.Millisecond), Decision{Reason: ReasonWindow, RetryAfter: time.Hour})
	if _, ok := c.get("x", t0.Add(1600*time.Millisecond)); ok {
		t.Fatal("a denial sent before the latest Reset was cached: the fence moved back")
	}
}

// TestImportFencesDenialsInFlight: a denial Redis gave for a request sent
// before Import must not put the user back in the cache after it.
func TestImportFencesDenialsInFlight(t *testing.T) {
	cfg := userConfig(10*time.Second, 20, time.Hour)
	cfg.LocalCacheSize = 100
	l, _ := newTestLimiter(t, cfg)
	ctx := context.Background()
	sent := time.Now()
	if err := l.Import(ctx, "u", nil); err != nil {
		t.Fatal(err)
	}
	// The reply of the request sent before Import lands now.
	if _, err := l.userResult(ctx, "u", sent, []int64{0, int64(ReasonCooldown), 19, 9000, 3600000}, nil); err != nil {
		t.Fatal(err)
	}
	if d, ok := l.cache.get("u", time.Now()); ok {
		t.Fatalf("a denial from before Import is cached: %+v", d)
	}
	if d := mustAllow(t, l, "u"); !d.Allowed {
		t.Fatalf("after Import of no history: %+v", d)
	}
}

// A delayed caller (its instant read before it was descheduled, while
// another caller's later denial refreshed the entry) is never told to
// wait more than Redis said, nor denied once the entry has run out in
// real time.
func TestDenyCacheDelayedCaller(t *testing.T) {
	c := newDenyCache(100)
	t0 := time.Now()
	clock := t0
	c.clock = func() time.Time { return clock }
	stale := t0 // the delayed caller's instant
	// Another caller, sent 500 ms later, was denied for the rest of a 1 s
	// cooldown; its denial lands while the first caller sleeps.
	c.put("u", t0.Add(500*time.Millisecond), Decision{Reason: ReasonCooldown, Remaining: 19, RetryAfter: time.Second, ResetAfter: time.Hour})
	clock = t0.Add(600 * time.Millisecond)
	d, ok := c.get("u", stale)
	if !ok || d.RetryAfter != 900*time.Millisecond || d.ResetAfter != time.Hour-100*time.Millisecond {
		t.Fatalf("delayed caller got %+v, %v; want RetryAfter 900ms (Redis said 1s, 100ms ago)", d, ok)
	}
	// Counted from the stale instant alone it would be 1.5 s: more than the
	// whole cooldown. Even with the clock unread, never more than Redis said.
	c.clock = func() time.Time { return time.Time{} }
	if d, ok := c.get("u", stale); !ok || d.RetryAfter > time.Second {
		t.Fatalf("stale instant: %+v, %v; want at most Redis's 1s", d, ok)
	}
	// In real time the entry has run out: the delayed caller goes to Redis.
	c.clock = func() time.Time { return clock }
	clock = t0.Add(1500 * time.Millisecond)
	if d, ok := c.get("u", stale); ok {
		t.Fatalf("denied %+v past the entry's end", d)
	}
}
