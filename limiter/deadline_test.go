package limiter

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// stalledRedis accepts connections and never answers, as a paused or
// wedged server does.
func stalledRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(io.Discard, c) // until the client hangs up
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// Every method that talks to Redis returns by its context's deadline when
// Redis never answers, even with a far longer RedisTimeout
// (docs/reliability.md, Deadlines): with an error, or a Degraded decision
// once Redis is marked down. The bound allows scheduling slack on a loaded
// machine, still far below RedisTimeout.
func TestEveryCallReturnsByItsDeadline(t *testing.T) {
	// A lease token of pool "llm", granted on a working Redis.
	ok, _ := newTestLimiter(t, DefaultConfig())
	granted, err := mustSlots(t, ok, "llm", 1, time.Second).TryAcquire(context.Background(), "ann")
	if err != nil {
		t.Fatal(err)
	}

	l := stalledLimiter(t, DefaultConfig())
	b := mustBackoff(t, l, "llm")
	api := mustBucket(t, l, "api", 1, 1)
	pool := mustSlots(t, l, "llm", 1, time.Second)
	lease, err := pool.Lease(granted.Token())
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(context.Context) error{
		"Allow":     func(ctx context.Context) error { _, err := l.Allow(ctx, "u"); return err },
		"AllowMany": func(ctx context.Context) error { _, err := l.AllowMany(ctx, []string{"u", "v"}); return err },
		"Wait":      func(ctx context.Context) error { _, err := l.Wait(ctx, "u"); return err },
		"Peek":      func(ctx context.Context) error { _, err := l.Peek(ctx, "u"); return err },
		"Reset":     func(ctx context.Context) error { return l.Reset(ctx, "u") },
		"Import": func(ctx context.Context) error {
			return l.Import(ctx, "u", []time.Time{time.Now().Add(-time.Minute)})
		},
		"Bucket.Allow":       func(ctx context.Context) error { _, err := api.Allow(ctx); return err },
		"Bucket.Wait":        func(ctx context.Context) error { _, err := api.Wait(ctx); return err },
		"Backoff.Check":      func(ctx context.Context) error { _, err := b.Check(ctx, "ep"); return err },
		"Backoff.Pick":       func(ctx context.Context) error { _, _, err := b.Pick(ctx, "ep", "other"); return err },
		"Backoff.Failure":    func(ctx context.Context) error { _, err := b.Failure(ctx, "ep"); return err },
		"Backoff.Success":    func(ctx context.Context) error { return b.Success(ctx, "ep") },
		"Backoff.Abandon":    func(ctx context.Context) error { return b.Abandon(ctx, "ep", "0123456789abcdef") },
		"Backoff.Status":     func(ctx context.Context) error { _, err := b.Status(ctx, "ep"); return err },
		"Backoff.Wait":       func(ctx context.Context) error { _, err := b.Wait(ctx, "ep"); return err },
		"Slots.TryAcquire":   func(ctx context.Context) error { _, err := pool.TryAcquire(ctx, "u"); return err },
		"Slots.Acquire":      func(ctx context.Context) error { _, err := pool.Acquire(ctx, "u"); return err },
		"Slots.InUse":        func(ctx context.Context) error { _, err := pool.InUse(ctx); return err },
		"Slots.Waiting":      func(ctx context.Context) error { _, err := pool.Waiting(ctx); return err },
		"Lease.Refresh":      func(ctx context.Context) error { return lease.Refresh(ctx) },
		"Lease.Release":      func(ctx context.Context) error { return lease.Release(ctx) },
		"Backoff.Do (Check)": func(ctx context.Context) error { return b.Do(ctx, "ep", func(context.Context) error { return nil }) },
	}
	returnByDeadline(t, "", calls)
}

// stalledLimiter is a Limiter with cfg, its cache off, on a stalledRedis
// with a RedisTimeout (10 s) far longer than any call's deadline.
func stalledLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	cfg.RedisURL = stalledRedis(t)
	cfg.RedisTimeout = 10 * time.Second
	cfg.LocalCacheSize = 0
	return clientLimiter(t, cfg)
}

// returnByDeadline makes every call at once, each with a 200 ms context,
// and fails the test for one that took much longer (the slack is for a
// loaded machine) or refused its arguments before reaching Redis.
func returnByDeadline(t *testing.T, prefix string, calls map[string]func(context.Context) error) {
	t.Helper()
	const deadline, slack = 200 * time.Millisecond, time.Second
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			err := call(ctx)
			if took := time.Since(start); took > deadline+slack {
				t.Errorf("%s%s took %v with a %v deadline (%v)", prefix, name, took, deadline, err)
			}
			if errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s%s refused its arguments before reaching Redis: %v", prefix, name, err)
			}
		}()
	}
	wg.Wait()
}
