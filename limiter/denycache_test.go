package limiter

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestDenyCacheCountsDown(t *testing.T) {
	c := newDenyCache(100)
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
		{6*time.Second - time.Nanosecond, true, time.Nanosecond, time.Hour - 6*time.Second + time.Nanosecond},
		// Exactly when Redis said the request passes, the cache lets go.
		{6 * time.Second, false, 0, 0},
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
		c.put(fmt.Sprint("user", i), t0, Decision{Reason: ReasonHourly, RetryAfter: time.Duration(i+1) * time.Second})
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
	b.ReportMetric(1000, "ns/op_target_max") // the seed's "lookup < 1 µs"
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
