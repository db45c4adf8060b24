package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingTokens makes b hand out tokens 0000000000000001, ...2, ... so a
// test can tell probes apart.
func countingTokens(b *Backoff) {
	var n atomic.Uint64
	b.token = func() string { return fmt.Sprintf("%016x", n.Add(1)) }
}

func tok(n int) string { return fmt.Sprintf("%016x", n) }

// probeOf is bProbe with the given token.
func probeOf(lease time.Duration, token string) Decision {
	d := bProbe(lease)
	d.Token = token
	return d
}

func mustCheck(t *testing.T, b *Backoff, endpoint string) Decision {
	t.Helper()
	d, err := b.Check(context.Background(), endpoint)
	d = must(t, d, err, "Check(%q)", endpoint)
	if !d.Allowed && d.RetryAfter < time.Millisecond {
		t.Fatalf("Check(%q) denied with RetryAfter %v, want at least 1ms", endpoint, d.RetryAfter)
	}
	return d
}

func TestBackoffAbandon(t *testing.T) {
	b, r := newTestBackoff(t, backoffConfig())
	countingTokens(b)
	ctx := context.Background()
	const key = "floodgate:{e:llm}:" + epLocal

	// Nothing to hand back: no key is written.
	if err := b.Abandon(ctx, epLocal, tok(9)); err != nil {
		t.Fatal(err)
	}
	if keys := r.mr.Keys(); len(keys) != 0 {
		t.Fatalf("Abandon on a closed endpoint wrote %q", keys)
	}
	if _, err := b.Failure(ctx, epLocal); err != nil {
		t.Fatal(err)
	}
	r.at(5 * bsec)
	if d := mustCheck(t, b, epLocal); d != probeOf(30*bsec, tok(1)) {
		t.Fatalf("first probe: %+v", d)
	}
	// A token that names no probe frees nothing.
	for _, stale := range []string{tok(9), "", tok(2)} {
		if err := b.Abandon(ctx, epLocal, stale); err != nil {
			t.Fatalf("Abandon(%q) = %v", stale, err)
		}
		if d := mustCheck(t, b, epLocal); d != bProbing(30*bsec) {
			t.Fatalf("after Abandon(%q): %+v, want the probe still held", stale, d)
		}
	}
	// The holder hands it back: the next caller probes at once, not 30 s on,
	// and nothing was counted.
	r.at(6 * bsec)
	if err := b.Abandon(ctx, epLocal, tok(1)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, b, epLocal, "status after Abandon", BackoffStatus{State: StateHalfOpen, Opens: 1, Failures: 1, Delay: 5 * bsec})
	// Every Check draws a token: 2..4 went to the denied ones.
	newTok := tok(5)
	if d := mustCheck(t, b, epLocal); d != probeOf(30*bsec, newTok) {
		t.Fatalf("after Abandon: %+v, want a new probe", d)
	}
	// The old token, abandoned twice, does not free the new probe.
	if err := b.Abandon(ctx, epLocal, tok(1)); err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, b, epLocal); d != bProbing(30*bsec) {
		t.Fatalf("stale token freed the new probe: %+v", d)
	}
	// Once the probe has reported, its token frees nothing either.
	if _, err := b.Failure(ctx, epLocal); err != nil {
		t.Fatal(err)
	}
	if err := b.Abandon(ctx, epLocal, newTok); err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, b, epLocal); d != bOpen(10*bsec) {
		t.Fatalf("after the probe's Failure and a late Abandon: %+v", d)
	}
	if v, _ := r.rdb.HGet(ctx, key, "t").Result(); v != "" {
		t.Fatalf("a Failure left the probe's token %q in the hash", v)
	}

	// Bad input.
	for _, bad := range []string{"x", tok(1) + "0", "000000000000000G", "00000000000000A1"} {
		if err := b.Abandon(ctx, epLocal, bad); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Abandon(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
	if err := b.Abandon(ctx, "", tok(1)); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Abandon on an empty endpoint = %v", err)
	}
	// A foreign key is reported, not overwritten.
	if err := r.rdb.Set(ctx, "floodgate:{e:llm}:other", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Abandon(ctx, "other", tok(1)); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("Abandon on a foreign key = %v, want ErrForeignKey", err)
	}
}

// TestBackoffCancelledProbeFreesEndpoint is issue 11 item 8: a probe whose
// request was cancelled must not hold the endpoint for the whole lease on
// every replica. Do hands it back; another replica probes at once.
func TestBackoffCancelledProbeFreesEndpoint(t *testing.T) {
	bs, _ := probeDueReplicas(t, 2)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		fn   func(ctx context.Context, cancel context.CancelFunc) error
	}{
		{"cancelled", func(ctx context.Context, cancel context.CancelFunc) error {
			cancel() // the user went away while the LLM was thinking
			<-ctx.Done()
			return ctx.Err()
		}},
		{"cancelled, fn returned nothing of it", func(ctx context.Context, cancel context.CancelFunc) error {
			cancel()
			return errors.New("read tcp: use of closed network connection")
		}},
	} {
		cctx, cancel := context.WithCancel(ctx)
		ran := false
		err := bs[0].Do(cctx, epOpenAI, func(ctx context.Context) error {
			ran = true
			if d := mustCheck(t, bs[1], epOpenAI); d.Reason != ReasonProbing {
				t.Fatalf("%s: while the probe runs, the other replica gets %+v", tc.name, d)
			}
			return tc.fn(ctx, cancel)
		})
		cancel()
		if !ran || err == nil {
			t.Fatalf("%s: Do = %v, ran %v", tc.name, err, ran)
		}
		if d := mustCheck(t, bs[1], epOpenAI); !d.Probe {
			t.Fatalf("%s: after the cancelled probe the other replica gets %+v, want the probe at once", tc.name, d)
		}
		if err := bs[1].Abandon(ctx, epOpenAI, testToken); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, bs[0], epOpenAI, tc.name+": a cancelled probe was counted", BackoffStatus{State: StateHalfOpen, Opens: 1, Failures: 1, Delay: 5 * bsec})
	}
}

var errBadPrompt = errors.New("400: prompt too long")

func TestBackoffDo(t *testing.T) {
	cfg := backoffConfig()
	l, r := newTestLimiter(t, cfg)
	b, err := l.Backoff("llm", BackoffSettings{IsFailure: func(err error) bool { return !errors.Is(err, errBadPrompt) }})
	if err != nil {
		t.Fatal(err)
	}
	b.token = func() string { return testToken }
	ctx := context.Background()
	calls := 0
	call := func(ret error) func(context.Context) error {
		return func(context.Context) error { calls++; return ret }
	}
	errDown := errors.New("502 bad gateway")
	status := func() BackoffStatus { return mustStatus(t, b, epLocal) }

	// Closed: fn runs; its error is returned as is and opens the endpoint.
	if err := b.Do(ctx, epLocal, call(nil)); err != nil || calls != 1 {
		t.Fatalf("Do on a closed endpoint = %v, %d calls", err, calls)
	}
	if err := b.Do(ctx, epLocal, call(errDown)); err != errDown {
		t.Fatalf("Do = %v, want fn's error as is", err)
	}
	if s := status(); s.State != StateOpen || s.Failures != 1 {
		t.Fatalf("after a failing Do: %+v", s)
	}
	// Open: fn does not run; the error carries the decision.
	r.at(2 * bsec)
	err = b.Do(ctx, epLocal, call(nil))
	var open *BackoffOpenError
	if !errors.Is(err, ErrBackoffOpen) || !errors.As(err, &open) || calls != 2 {
		t.Fatalf("Do while open = %v (%d calls), want ErrBackoffOpen", err, calls)
	}
	if open.Endpoint != epLocal || open.Decision != bOpen(3*bsec) {
		t.Fatalf("BackoffOpenError = %+v", open)
	}
	if want := `limiter: endpoint "http://localhost:1234" not usable now (backoff); retry after 3s`; err.Error() != want {
		t.Fatalf("error text %q, want %q", err, want)
	}

	// Half-open. A bad prompt is not the endpoint's failure: the probe is
	// handed back, nothing counted.
	r.at(5 * bsec)
	if err := b.Do(ctx, epLocal, call(errBadPrompt)); err != errBadPrompt {
		t.Fatal(err)
	}
	if s := status(); s.State != StateHalfOpen || s.Probing || s.Failures != 1 {
		t.Fatalf("after a bad prompt on the probe: %+v", s)
	}
	// A panic hands the probe back and goes on.
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the panic to go on", p)
			}
		}()
		_ = b.Do(ctx, epLocal, func(context.Context) error { panic("boom") })
	}()
	if s := status(); s.Probing || s.Failures != 1 {
		t.Fatalf("after a panicking probe: %+v", s)
	}
	// fn's own timeout while the caller still waits: the endpoint is slow,
	// a failure, and the next delay.
	err = b.Do(ctx, epLocal, func(ctx context.Context) error {
		return fmt.Errorf("llm: %w", context.DeadlineExceeded)
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if s := status(); s.State != StateOpen || s.Opens != 2 || s.Failures != 2 || s.Delay != 10*bsec {
		t.Fatalf("after the probe timed out: %+v", s)
	}
	// The caller's deadline passes during fn: not counted, probe back.
	r.at(15 * bsec)
	dctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	err = b.Do(dctx, epLocal, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if s := status(); s.State != StateHalfOpen || s.Probing || s.Failures != 2 {
		t.Fatalf("after the caller's deadline: %+v", s)
	}
	// A success closes it.
	if err := b.Do(ctx, epLocal, call(nil)); err != nil {
		t.Fatal(err)
	}
	if s := status(); s != (BackoffStatus{}) {
		t.Fatalf("after a successful probe: %+v", s)
	}

	if err := b.Do(ctx, epLocal, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Do(nil) = %v", err)
	}
	if err := b.Do(ctx, "", call(nil)); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Do on an empty endpoint = %v", err)
	}
	// A report that fails is joined to fn's error: here a foreign key.
	if err := r.rdb.Set(ctx, "floodgate:{e:llm}:other", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Do(ctx, "other", call(nil)); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("Do on a foreign key = %v", err)
	}
}

func TestBackoffDoDefaultIsFailure(t *testing.T) {
	b, r := newTestBackoff(t, backoffConfig())
	ctx := context.Background()
	for i, tc := range []struct {
		err    error
		counts bool
	}{
		{errBadPrompt, true},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("x: %w", context.Canceled), false},
	} {
		ep := fmt.Sprint("ep-", i)
		_ = b.Do(ctx, ep, func(context.Context) error { return tc.err })
		if s := mustStatus(t, b, ep); (s.Failures == 1) != tc.counts {
			t.Fatalf("%v: status %+v, counted want %v", tc.err, s, tc.counts)
		}
	}
	_ = r
}

func TestBackoffDoDegraded(t *testing.T) {
	ctx := context.Background()
	// FailClosed: Do does not run fn and says why.
	cfg := backoffConfig()
	cfg.RedisTimeout = 20 * bms
	cfg.BackoffOnRedisError = FailClosed
	b, r := newTestBackoff(t, cfg)
	r.mr.Close()
	err := b.Do(ctx, epLocal, func(context.Context) error { t.Fatal("fn ran"); return nil })
	var open *BackoffOpenError
	if !errors.As(err, &open) || open.Decision.Reason != ReasonRedisDown || open.Decision.RetryAfter < bms {
		t.Fatalf("Do, Redis down, FailClosed = %v", err)
	}

	// FailLocal: the probe and its hand-back live in the fallback.
	cfg.BackoffOnRedisError = FailLocal
	b, r = newTestBackoff(t, cfg)
	countingTokens(b)
	now := epoch
	b.now = func() time.Time { return now }
	r.mr.Close()
	if _, err := b.Failure(ctx, epLocal); err != nil {
		t.Fatal(err)
	}
	now = now.Add(5 * bsec)
	d := mustCheck(t, b, epLocal)
	if !d.Probe || !d.Degraded || d.Token != tok(1) {
		t.Fatalf("degraded probe: %+v", d)
	}
	if d := mustCheck(t, b, epLocal); d.Reason != ReasonProbing {
		t.Fatalf("second check: %+v", d)
	}
	if err := b.Abandon(ctx, epLocal, tok(2)); err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, b, epLocal); d.Reason != ReasonProbing {
		t.Fatalf("a stale token freed the local probe: %+v", d)
	}
	if err := b.Abandon(ctx, epLocal, tok(1)); err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, b, epLocal); !d.Probe || d.Token != tok(4) {
		t.Fatalf("after Abandon, degraded: %+v", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	_ = b.Abandon(ctx, epLocal, tok(4))
	err = b.Do(cctx, epLocal, func(context.Context) error { cancel(); return context.Canceled })
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if d := mustCheck(t, b, epLocal); !d.Probe {
		t.Fatalf("a cancelled degraded Do kept the probe: %+v", d)
	}
}

// TestBackoffDoOneProbeAtATime: many goroutines on several replicas Do
// against a half-open endpoint whose calls all end without a verdict
// (handed back). The clock is frozen, so no lease runs out: exactly one fn
// runs at a time, and the probe passes from caller to caller.
func TestBackoffDoOneProbeAtATime(t *testing.T) {
	r := newTestRedis(t)
	var bs []*Backoff
	for i := 0; i < 3; i++ {
		l, err := New(r.rdb, backoffConfig())
		if err != nil {
			t.Fatal(err)
		}
		b, err := l.Backoff("llm", BackoffSettings{IsFailure: func(err error) bool { return !errors.Is(err, errBadPrompt) }})
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	ctx := context.Background()
	if _, err := bs[0].Failure(ctx, epLocal); err != nil {
		t.Fatal(err)
	}
	r.at(5 * bsec)
	var running, maxRunning, probes, denied atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 24; g++ {
		wg.Add(1)
		go func(b *Backoff) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				err := b.Do(ctx, epLocal, func(context.Context) error {
					n := running.Add(1)
					for {
						m := maxRunning.Load()
						if n <= m || maxRunning.CompareAndSwap(m, n) {
							break
						}
					}
					probes.Add(1)
					time.Sleep(50 * time.Microsecond)
					running.Add(-1)
					return errBadPrompt
				})
				var open *BackoffOpenError
				switch {
				case errors.Is(err, errBadPrompt):
				case errors.As(err, &open) && open.Decision.Reason == ReasonProbing && open.Decision.RetryAfter >= bms:
					denied.Add(1)
				default:
					t.Errorf("Do = %v", err)
					return
				}
			}
		}(bs[g%3])
	}
	wg.Wait()
	if m := maxRunning.Load(); m != 1 {
		t.Fatalf("%d probes ran at once, want 1", m)
	}
	if p, d := probes.Load(), denied.Load(); p < 2 || p+d != 24*40 {
		t.Fatalf("%d probes and %d denials of %d calls; want the probe handed on", p, d, 24*40)
	}
	if s := mustStatus(t, bs[0], epLocal); s.Failures != 1 || s.Probing {
		t.Fatalf("status %+v", s)
	}
}
