package limiter

import (
	"context"
	"testing"
	"time"
)

// stepBack sets Redis TIME back by d, as a failover to a server whose clock
// is behind does; TTLs are untouched.
func (r *testRedis) stepBack(d time.Duration) {
	r.t.Helper()
	r.now = r.now.Add(-d)
	r.mr.SetTime(r.now)
}

// forward moves Redis TIME and TTLs on by d from wherever the clock is.
func (r *testRedis) forward(d time.Duration) { r.advance(d) }

// failedBackoff is a Backoff (backoffConfig) whose epLocal has just
// failed once: open for 5 s.
func failedBackoff(t *testing.T) (*Backoff, *testRedis) {
	t.Helper()
	b, r := newTestBackoff(t, backoffConfig())
	if _, err := b.Failure(context.Background(), epLocal); err != nil {
		t.Fatal(err)
	}
	return b, r
}

// wantCheck asserts what Check says for epLocal at this point (when).
func wantCheck(t *testing.T, b *Backoff, want Decision, when string) {
	t.Helper()
	if d := mustCheck(t, b, epLocal); d != want {
		t.Fatalf("%s: %+v, want %+v", when, d, want)
	}
}

// TestBackoffClockStepsBack is issue 11 item 3: after Redis TIME steps back
// an hour, an open endpoint is open for at most its delay on the new clock,
// and a probe's lease lasts at most the lease, not for as long as the skew.
func TestBackoffClockStepsBack(t *testing.T) {
	ctx := context.Background()
	const key = "floodgate:{e:llm}:" + epLocal

	t.Run("open", func(t *testing.T) {
		b, r := failedBackoff(t)
		r.forward(2 * bsec)
		r.stepBack(time.Hour)
		// Inspection does not write, but reports no more than the delay.
		if s := mustStatus(t, b, epLocal); s.State != StateOpen || s.RetryAfter != 5*bsec {
			t.Fatalf("status after the step: %+v", s)
		}
		wantCheck(t, b, bOpen(5*bsec), "check after the step")
		if ttl := r.mr.TTL(key); ttl != 305*bsec {
			t.Fatalf("TTL %v after the step, want the delay + LLMBackoffMax on the new clock", ttl)
		}
		r.forward(4 * bsec)
		wantCheck(t, b, bOpen(1*bsec), "check 4s on")
		r.forward(1 * bsec)
		wantCheck(t, b, bProbe(30*bsec), "check one delay after the step")
		// The schedule goes on from the same level.
		if d, err := b.Failure(ctx, epLocal); err != nil || d != bOpen(10*bsec) {
			t.Fatalf("the probe's failure: %+v %v", d, err)
		}
	})

	t.Run("stale failure", func(t *testing.T) {
		b, r := failedBackoff(t)
		r.stepBack(time.Hour)
		// A failure reported first after the step pulls the deadline in too.
		if d, err := b.Failure(ctx, epLocal); err != nil || d != bOpen(5*bsec) {
			t.Fatalf("stale failure after the step: %+v %v", d, err)
		}
		r.forward(5 * bsec)
		wantCheck(t, b, bProbe(30*bsec), "one delay after")
		if s := mustStatus(t, b, epLocal); s.Opens != 1 || s.Failures != 2 || s.Delay != 5*bsec {
			t.Fatalf("a stale failure escalated: %+v", s)
		}
	})

	t.Run("probe lease", func(t *testing.T) {
		b, r := failedBackoff(t)
		r.forward(5 * bsec)
		wantCheck(t, b, bProbe(30*bsec), "probe")
		r.forward(10 * bsec)
		r.stepBack(time.Hour)
		// Now before u again: the open test comes first and pulls u in.
		wantCheck(t, b, bOpen(5*bsec), "check after the step")
		r.forward(5 * bsec)
		// Half-open on the new clock; the old lease, an hour ahead, is
		// pulled in to one lease.
		if s := mustStatus(t, b, epLocal); s.State != StateHalfOpen || !s.Probing || s.RetryAfter != 30*bsec {
			t.Fatalf("status: %+v", s)
		}
		wantCheck(t, b, bProbing(30*bsec), "check")
		r.forward(30 * bsec)
		wantCheck(t, b, bProbe(30*bsec), "one lease on")
	})

	t.Run("probe lease, half-open on both clocks", func(t *testing.T) {
		b, r := failedBackoff(t)
		r.forward(100 * bsec)
		wantCheck(t, b, bProbe(30*bsec), "probe")
		r.stepBack(60 * bsec) // still past u = 5 s, the lease now 90 s ahead
		wantCheck(t, b, bProbing(30*bsec), "check after the step")
		if ttl := r.mr.TTL(key); ttl != 330*bsec {
			t.Fatalf("TTL %v, want lease + LLMBackoffMax", ttl)
		}
		r.forward(30 * bsec)
		wantCheck(t, b, bProbe(30*bsec), "one lease on")
	})

	t.Run("pick", func(t *testing.T) {
		b, r := newTestBackoff(t, backoffConfig())
		for _, ep := range []string{epLocal, epOpenAI} {
			if _, err := b.Failure(ctx, ep); err != nil {
				t.Fatal(err)
			}
		}
		r.stepBack(time.Hour)
		if ep, d, err := b.Pick(ctx, epLocal, epOpenAI); err != nil || ep != "" || d != bOpen(5*bsec) {
			t.Fatalf("Pick after the step = %q %+v %v", ep, d, err)
		}
		r.forward(5 * bsec)
		if ep, d, err := b.Pick(ctx, epLocal, epOpenAI); err != nil || ep != epLocal || d != bProbe(30*bsec) {
			t.Fatalf("Pick one delay on = %q %+v %v", ep, d, err)
		}
	})
}
