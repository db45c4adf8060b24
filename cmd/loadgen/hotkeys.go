package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// HotKeyResult is one shared key hammered from N goroutines: a state every
// user shares lives in one key, so in one slot on one shard by design, and
// that shard's main thread is its ceiling whatever the number of shards.
type HotKeyResult struct {
	Op        string  `json:"op"`
	PerSecond float64 `json:"per_second"` // calls/s reached from this client
	ServerTime
}

// measureHotKeys times the full test's shared state: the wikipedia bucket
// (Bucket.Allow), the LLM pool, full since writeSharedState holds every
// slot (Slots.TryAcquire, denied), and an endpoint with a failure
// (Backoff.Check). Each runs --duration/2 at --goroutines; the server
// time is every master's, as nothing else runs meanwhile.
func (b *bench) measureHotKeys(ctx context.Context, w redis.UniversalClient, cfg limiter.Config) ([]HotKeyResult, error) {
	l, err := newLimiter(w, cfg)
	if err != nil {
		return nil, err
	}
	bucket, err := l.Bucket("wikipedia", limiter.BucketSettings{})
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	pool, err := l.Slots(llmPool, limiter.SlotsSettings{})
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	bo, err := l.Backoff(llmPool, limiter.BackoffSettings{})
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	degraded := func(d limiter.Decision, err error) error {
		if err == nil && d.Degraded {
			return errDegraded(cfg)
		}
		return err
	}
	ops := []struct {
		name string
		op   func(ctx context.Context, rng *rand.Rand) error
	}{
		{"Bucket.Allow, API bucket (wikipedia)", func(ctx context.Context, _ *rand.Rand) error { return degraded(bucket.Allow(ctx)) }},
		{"Slots.TryAcquire, full LLM pool", func(ctx context.Context, rng *rand.Rand) error {
			lease, err := pool.TryAcquire(ctx, fmt.Sprintf("hot_%d", rng.IntN(1_000_000)))
			if err == nil && lease != nil {
				return lease.Release(ctx) // a slot freed meanwhile: give it back
			}
			if err != nil && !errors.Is(err, limiter.ErrNoSlot) { // a full pool is the answer, not an error
				return err
			}
			return nil
		}},
		{"Backoff.Check, failing endpoint", func(ctx context.Context, _ *rand.Rand) error {
			return degraded(bo.Check(ctx, studyEndpoints[0]))
		}},
	}
	var out []HotKeyResult
	for i, o := range ops {
		meter := newServerMeter(b.shards)
		op := func(ctx context.Context, rng *rand.Rand) error {
			meter.n[0].Add(1)
			return o.op(ctx, rng)
		}
		if err := meter.begin(ctx, w); err != nil {
			return nil, err
		}
		n, took, err := throughput(ctx, b.o.goroutines, b.o.duration/2, [2]uint64{b.o.seed, uint64(i) << 40}, op)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %s: %w", o.name, err)
		}
		if err := meter.end(ctx, w); err != nil {
			return nil, err
		}
		_, total := meter.result()
		out = append(out, HotKeyResult{Op: o.name, PerSecond: float64(n) / took.Seconds(), ServerTime: total})
	}
	return out, nil
}
