package main

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// quantile returns the q-quantile (0..1) of sorted by the nearest-rank
// method: the smallest sample at or above a fraction q of the samples, so
// p99.9 of 10,000 samples is the 10th largest.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// latencyStats summarises per-call durations.
type latencyStats struct {
	n                   int
	p50, p99, p999, avg time.Duration
}

func summarize(samples []time.Duration) latencyStats {
	if len(samples) == 0 {
		return latencyStats{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return latencyStats{
		n:    len(s),
		p50:  quantile(s, 0.50),
		p99:  quantile(s, 0.99),
		p999: quantile(s, 0.999),
		avg:  sum / time.Duration(len(s)),
	}
}

// timeEach runs op n times in a row and returns each call's duration.
// When every > 0 it also times probe after every every-th call, so that op
// and probe see the same moments of a noisy machine.
func timeEach(ctx context.Context, n, every int, rng *rand.Rand, tick func(), op, probe func(ctx context.Context, rng *rand.Rand) error) (lat, probeLat []time.Duration, err error) {
	lat = make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := op(ctx, rng); err != nil {
			return nil, nil, err
		}
		lat = append(lat, time.Since(t0))
		if every > 0 && i%every == 0 {
			t0 = time.Now()
			if err := probe(ctx, rng); err != nil {
				return nil, nil, err
			}
			probeLat = append(probeLat, time.Since(t0))
		}
		tick()
	}
	return lat, probeLat, nil
}

// perSecond is the rate of calls that each take d, one after another.
func perSecond(d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(time.Second) / float64(d)
}

// median of xs (the mean of the middle two for an even count); 0 if empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// throughput runs op from g goroutines for about d and returns how many
// calls completed and how long that took. Goroutine i draws from its own
// generator, seeded from seed and i, so runs are repeatable.
func throughput(ctx context.Context, g int, d time.Duration, seed [2]uint64, op func(ctx context.Context, rng *rand.Rand) error) (int64, time.Duration, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	stop := start.Add(d)
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed[0], seed[1]+uint64(i)))
			for time.Now().Before(stop) {
				if err := op(ctx, rng); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				n.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	return n.Load(), time.Since(start), nil
}

// parallel calls fn(i) for i in [0, n) from up to workers goroutines and
// stops at the first error.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
