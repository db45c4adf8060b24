package limiter

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// Every Bucket denial carries a RetryAfter of at least 1 ms, in Redis and
// in the in-process fallback, and waiting it out admits the same request
// when nobody else takes tokens.
func TestBucketDenialsWaitAtLeast1ms(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	denials := 0
	for _, c := range []struct {
		perSecond float64
		burst     int
	}{{4, 1}, {3, 2}, {1000, 5}, {999_999, 3}} {
		b := mustBucket(t, l, "cmp", c.perSecond, c.burst)
		local := &localGCRA{}
		for range 300 {
			r.advance(time.Duration(rng.Int64N(2*b.interval)) * usec)
			n := 1 + rng.IntN(c.burst)
			d, err := b.AllowN(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				continue
			}
			denials++
			if d.RetryAfter < time.Millisecond {
				t.Fatalf("%g/%d: denial %+v waits under 1ms", c.perSecond, c.burst, d)
			}
			r.advance(d.RetryAfter)
			if d, err := b.AllowN(ctx, n); err != nil || !d.Allowed {
				t.Fatalf("%g/%d: AllowN(%d) after RetryAfter = %+v, %v", c.perSecond, c.burst, n, d, err)
			}
		}
		for range 50 {
			if d := local.allow(b.interval, c.burst, c.burst); !d.Allowed && d.RetryAfter < time.Millisecond {
				t.Fatalf("%g/%d: local denial %+v waits under 1ms", c.perSecond, c.burst, d)
			}
		}
	}
	if denials < 100 {
		t.Fatalf("only %d denials checked", denials)
	}
}

// When Redis TIME steps back, a Bucket's TAT is further ahead than its
// key's TTL (which runs in real time): a denial never says to wait past
// the key's expiry, after which the bucket is full.
func TestBucketClockStepsBack(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	ctx := context.Background()
	b := mustBucket(t, l, "igdb", 4, 1)
	if d, err := b.Allow(ctx); err != nil || !d.Allowed {
		t.Fatalf("Allow = %+v, %v", d, err)
	}
	r.mr.SetTime(r.now.Add(-10 * time.Second)) // TIME only; TTLs run on
	d, err := b.Allow(ctx)
	if err != nil || d.Allowed || d.RetryAfter > 251*msec || d.RetryAfter < 250*msec || d.ResetAfter > 251*msec {
		t.Fatalf("Allow after a 10s step back = %+v, %v; want a wait of the key's TTL (250ms), not 10.25s", d, err)
	}
	r.mr.FastForward(d.RetryAfter)
	if d, err := b.Allow(ctx); err != nil || !d.Allowed {
		t.Fatalf("Allow after RetryAfter = %+v, %v", d, err)
	}
}

// Every Slots denial carries a RetryAfter of at least 1 ms: until the
// earliest lease expires when every slot is held, 50 ms when the free
// slots are owed to waiters, and the same from the in-process pool.
func TestSlotsDenialsWaitAtLeast1ms(t *testing.T) {
	ctx := context.Background()
	cfg := slotsConfig()
	obs := &recordObserver{}
	cfg.Observer = obs
	l, r := newTestLimiter(t, cfg)
	s := mustSlots(t, l, "llm", 1, 10*time.Second)
	h := mustTry(t, s, "h")
	r.at(4 * time.Second)
	wantNoSlotRetry(t, s, "x", 6*time.Second, false)
	w := newWaiter("w")
	runPolls(t, s, []pollStep{{w, false, 0}})
	mustRelease(t, h)
	wantNoSlotRetry(t, s, "x", pollMax, false) // the free slot is w's

	cfg.SlotsOnRedisError = FailLocal
	l = downLimiter(t, cfg)
	s = mustSlots(t, l, "llm", 1, time.Minute)
	mustTry(t, s, "a")
	var nse *NoSlotError
	if _, err := s.TryAcquire(ctx, "b"); !errors.As(err, &nse) || !nse.Degraded ||
		nse.RetryAfter <= 59*time.Second || nse.RetryAfter > time.Minute {
		t.Fatalf("local TryAcquire on a full pool = %v (%+v), want RetryAfter ~1m", err, nse)
	}

	cfg.SlotsOnRedisError = FailClosed
	l = downLimiter(t, cfg)
	if _, err := mustSlots(t, l, "llm", 1, time.Minute).TryAcquire(ctx, "a"); !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("FailClosed TryAcquire = %v", err)
	}
	denied := 0
	for _, d := range obs.decisions {
		if d.Allowed {
			continue
		}
		denied++
		if d.RetryAfter < time.Millisecond {
			t.Errorf("observed denial %+v waits under 1ms", d)
		}
	}
	if denied != 4 {
		t.Fatalf("observer saw %d denials, want 4", denied)
	}
}

func wantNoSlotRetry(t *testing.T, s *Slots, holder string, retry time.Duration, degraded bool) {
	t.Helper()
	lease, err := s.TryAcquire(context.Background(), holder)
	var nse *NoSlotError
	if lease != nil || !errors.As(err, &nse) || !errors.Is(err, ErrNoSlot) || nse.RetryAfter != retry ||
		nse.Degraded != degraded || nse.Pool != s.Name() || nse.Size != s.Size() {
		t.Fatalf("TryAcquire(%s) = %v, %v (%+v); want NoSlotError with RetryAfter %v", holder, lease, err, nse, retry)
	}
}

// The worked numbers in the Bucket and Slots type docs.
func TestBucketAndSlotsDocNumbers(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	runBucketSteps(t, mustBucket(t, l, "api", 4, 2), r, []bucketStep{
		{0, 1, rateOK(1, 250*msec)},
		{0, 1, rateOK(0, 500*msec)},
		{100 * msec, 1, rateDenied(0, 150*msec, 400*msec)},
		{250 * msec, 1, rateOK(0, 500*msec)},
	})

	s := mustSlots(t, l, "llm", 2, 30*time.Second)
	ann := mustTry(t, s, "ann")
	mustTry(t, s, "bob")
	r.advance(10 * time.Second)
	wantNoSlotRetry(t, s, "cat", 20*time.Second, false)
	mustRelease(t, ann)
	mustTry(t, s, "cat")
}

// Every Backoff denial from the FailLocal fallback waits at least 1 ms,
// with the fallback's clock 300 µs, 10 µs and 1 ns before a deadline:
// Check, Pick, a probing denial, a late Failure and Do's error.
func TestBackoffFallbackDenialsWaitAtLeast1ms(t *testing.T) {
	ctx := context.Background()
	cfg := backoffConfig()
	cfg.RedisTimeout = 50 * time.Millisecond
	l := downLimiter(t, cfg)
	b := mustBackoff(t, l, "llm")
	t0 := time.Now()
	clock := t0
	b.now = func() time.Time { return clock }
	atLeast1ms := func(what string, d Decision, err error) {
		t.Helper()
		if err != nil || d.Allowed || !d.Degraded || d.RetryAfter < time.Millisecond || d.ResetAfter < d.RetryAfter {
			t.Fatalf("%s = %+v, %v; want a degraded denial waiting at least 1ms", what, d, err)
		}
	}
	d, err := b.Failure(ctx, "ep") // open for 5 s
	atLeast1ms("Failure", d, err)
	open := d.RetryAfter
	clock = t0.Add(open - 300*time.Microsecond)
	d, err = b.Check(ctx, "ep")
	atLeast1ms("Check 300µs before the probe", d, err)
	clock = t0.Add(open - 10*time.Microsecond)
	_, d, err = b.Pick(ctx, "ep")
	atLeast1ms("Pick 10µs before the probe", d, err)
	clock = t0.Add(open - time.Nanosecond)
	d, err = b.Failure(ctx, "ep")
	atLeast1ms("late Failure 1ns before the probe", d, err)
	var oe *BackoffOpenError
	if err := b.Do(ctx, "ep", func(context.Context) error { return nil }); !errors.As(err, &oe) || oe.Decision.RetryAfter < time.Millisecond {
		t.Fatalf("Do 1ns before the probe = %v, want a BackoffOpenError waiting at least 1ms", err)
	}
	clock = t0.Add(open)
	if d := mustCheck(t, b, "ep"); !d.Allowed || !d.Probe {
		t.Fatalf("Check at the deadline = %+v, want the probe", d)
	}
	clock = t0.Add(open + b.set.ProbeLease - 10*time.Microsecond)
	d, err = b.Check(ctx, "ep")
	atLeast1ms("probing denial 10µs before the lease ends", d, err)
	if d.Reason != ReasonProbing {
		t.Fatalf("probing denial = %+v, want ReasonProbing", d)
	}
}
