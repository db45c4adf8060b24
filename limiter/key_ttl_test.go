package limiter

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// No Bucket key outlives its refill time after the last admitted call, nor
// MaxIdleTime: random calls at random instants, TTL checked after each.
func TestBucketKeyTTLWithinIdleTime(t *testing.T) {
	cfg := bucketConfig()
	cfg.UserCooldown, cfg.MaxRequestsPerUserHour, cfg.MaxIdleTime, cfg.SlotLease = time.Second, 0, 10*time.Second, time.Second
	l, r := newTestLimiter(t, cfg)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	const key = "floodgate:{api:cmp}:t"
	for _, c := range []struct {
		perSecond float64
		burst     int
	}{{4, 1}, {3, 7}, {1, 10}, {1000, 20}, {0.7, 6}} {
		b := mustBucket(t, l, "cmp", c.perSecond, c.burst)
		limit := bucketKeyTTL(c.perSecond, c.burst)
		if limit > cfg.MaxIdleTime {
			t.Fatalf("%g/%d: refill %v over MaxIdleTime", c.perSecond, c.burst, limit)
		}
		r.mr.FlushAll()
		// A full bucket emptied at once: the longest TTL, exactly.
		if d, err := b.AllowN(ctx, c.burst); err != nil || !d.Allowed || r.mr.TTL(key) != limit {
			t.Fatalf("%g/%d: AllowN(burst) = %+v, %v; TTL %v, want %v", c.perSecond, c.burst, d, err, r.mr.TTL(key), limit)
		}
		for range 300 {
			r.advance(time.Duration(rng.Int64N(2*b.interval)) * usec)
			before := r.mr.TTL(key)
			d, err := b.AllowN(ctx, 1+rng.IntN(c.burst))
			if err != nil {
				t.Fatal(err)
			}
			ttl := r.mr.TTL(key)
			if !d.Allowed && ttl != before {
				t.Fatalf("%g/%d: a denial changed the TTL from %v to %v", c.perSecond, c.burst, before, ttl)
			}
			if ttl > limit {
				t.Fatalf("%g/%d: TTL %v, longer than the refill time %v", c.perSecond, c.burst, ttl, limit)
			}
		}
	}
}

// A Bucket or pool whose keys would outlive MaxIdleTime is refused when it
// is built; one that fits exactly is accepted.
func TestPolicySettingsWithinIdleTime(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UserCooldown, cfg.MaxRequestsPerUserHour, cfg.MaxIdleTime = time.Second, 0, 2*time.Second
	cfg.SlotLease = time.Second
	l, _ := newTestLimiter(t, cfg)
	if _, err := l.Bucket("api", BucketSettings{PerSecond: 2, Burst: 4}); err != nil {
		t.Fatalf("Bucket refilling in exactly MaxIdleTime: %v", err)
	}
	b, err := l.Bucket("api", BucketSettings{PerSecond: 2, Burst: 5})
	if b != nil || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "refills in 2.5s, longer than Config.MaxIdleTime (2s)") {
		t.Fatalf("Bucket refilling in 2.5s = %v, %v", b, err)
	}
	if _, err := l.Slots("llm", SlotsSettings{Size: 1, Lease: 2 * time.Second}); err != nil {
		t.Fatalf("Slots with a lease of exactly MaxIdleTime: %v", err)
	}
	s, err := l.Slots("llm", SlotsSettings{Size: 1, Lease: 2*time.Second + time.Millisecond})
	if s != nil || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "longer than Config.MaxIdleTime (2s)") {
		t.Fatalf("Slots with a lease over MaxIdleTime = %v, %v", s, err)
	}
	// Without a default pool, Validate lets SlotLease exceed MaxIdleTime;
	// a pool that would use it is refused when built.
	cfg.MaxConcurrentUsers, cfg.SlotLease = 0, time.Minute
	l, _ = newTestLimiter(t, cfg)
	if s, err := l.Slots("llm", SlotsSettings{Size: 3}); s != nil || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Slots with the default lease over MaxIdleTime = %v, %v", s, err)
	}
}

// Slot keys: holders live one lease after the last grant or Refresh,
// waiter keys one heartbeat after the last poll, and the heartbeat never
// exceeds MaxIdleTime.
func TestSlotsKeyTTLWithinIdleTime(t *testing.T) {
	cfg := slotsConfig()
	cfg.UserCooldown, cfg.MaxRequestsPerUserHour = time.Second, 0
	cfg.MaxIdleTime, cfg.SlotLease = 1500*time.Millisecond, time.Second
	l, r := newTestLimiter(t, cfg)
	s := mustSlots(t, l, "llm", 1, 0)
	if got := s.waiterTTL(); got != 1500*time.Millisecond {
		t.Fatalf("waiterTTL = %v, want MaxIdleTime (1.5s) below the 2s floor", got)
	}
	h := mustTry(t, s, "h")
	if ttl := r.mr.TTL(holdersKey); ttl != time.Second {
		t.Fatalf("holders TTL = %v, want the lease", ttl)
	}
	w := newWaiter("w")
	runPolls(t, s, []pollStep{{w, false, 0}})
	for _, k := range []string{waitersKey, aliveKey} {
		if ttl := r.mr.TTL(k); ttl != 1500*time.Millisecond {
			t.Fatalf("TTL(%s) = %v, want 1.5s", k, ttl)
		}
	}
	r.at(900 * msec)
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ttl := r.mr.TTL(holdersKey); ttl != time.Second {
		t.Fatalf("holders TTL after Refresh = %v, want the lease", ttl)
	}
	r.at(1500 * msec) // w's heartbeat lapsed: its keys are gone
	if r.mr.Exists(waitersKey) || r.mr.Exists(aliveKey) {
		t.Fatal("waiter keys outlived MaxIdleTime after the last poll")
	}
	r.at(1900 * msec)
	if r.mr.Exists(holdersKey) {
		t.Fatal("holders key outlived the lease after the last Refresh")
	}
}
