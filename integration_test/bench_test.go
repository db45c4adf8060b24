package integration_test

import (
	"context"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// Benchmarks report each figure as a ratio to a PING round trip measured
// in the same run on the same server, because this machine is shared and
// absolute numbers drift. Run them with:
//
//	go test ./integration_test -run '^$' -bench VsPing -benchtime 3s
//	go test ./integration_test -run '^$' -bench Peers -benchtime 1x   # peers_bench_test.go

// rate runs op from g goroutines for about d and returns ops per second
// and the per-call latencies of the first goroutine.
func rate(b *testing.B, g int, d time.Duration, op func(rng *rand.Rand) error) (float64, []time.Duration) {
	b.Helper()
	start := time.Now()
	n, lat := runFor(b, g, d, op)
	return float64(n) / time.Since(start).Seconds(), lat
}

// runFor runs op from g goroutines for d; it returns how many ran and the
// latencies of the first goroutine's.
func runFor(b *testing.B, g int, d time.Duration, op func(rng *rand.Rand) error) (int64, []time.Duration) {
	b.Helper()
	var n atomic.Int64
	var wg sync.WaitGroup
	var lat []time.Duration
	stop := time.Now().Add(d)
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for time.Now().Before(stop) {
				t0 := time.Now()
				if err := op(rng); err != nil {
					b.Error(err)
					return
				}
				if i == 0 {
					lat = append(lat, time.Since(t0))
				}
				n.Add(1)
			}
		}(i)
	}
	wg.Wait()
	return n.Load(), lat
}

// versusPing measures op and PING from g goroutines in 6 alternating
// slices each, about d in all, so that load from elsewhere on this shared
// machine lands on both alike. It returns both rates and latencies.
func versusPing(b *testing.B, rdb *redis.Client, g int, d time.Duration, op func(rng *rand.Rand) error) (opRate, pingRate float64, opLat, pingLat []time.Duration) {
	b.Helper()
	ctx := context.Background()
	ping := func(*rand.Rand) error { return rdb.Ping(ctx).Err() }
	const slices = 6
	slice := d / (2 * slices)
	var opSum, pingSum float64
	for i := 0; i < slices; i++ {
		r, l := rate(b, g, slice, op)
		opSum += r
		opLat = append(opLat, l...)
		r, l = rate(b, g, slice, ping)
		pingSum += r
		pingLat = append(pingLat, l...)
	}
	return opSum / slices, pingSum / slices, opLat, pingLat
}

func p50(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// uncachedLimiter is a Limiter on rdb with the local cache off: every
// decision goes to Redis.
func uncachedLimiter(b *testing.B, rdb *redis.Client) *limiter.Limiter {
	b.Helper()
	cfg := limiter.DefaultConfig()
	cfg.LocalCacheSize = 0
	return newLimiter(b, rdb, cfg)
}

// BenchmarkAllowVsPing measures Allow (cooldown + window, local cache off,
// users drawn from 100,000 so most decisions write) against PING, at 1 and
// 32 goroutines. Metrics: allow/s, ping/s, rate_ratio (allow/ping), and at
// 1 goroutine p50_ratio (Allow p50 / PING p50).
func BenchmarkAllowVsPing(b *testing.B) {
	rdb := client(b)
	l := uncachedLimiter(b, rdb)
	ctx := context.Background()
	for _, g := range []int{1, 32} {
		b.Run("goroutines="+strconv.Itoa(g), func(b *testing.B) {
			d := min(max(time.Duration(b.N)*time.Millisecond, time.Second), 10*time.Second)
			allow, ping, allowLat, pingLat := versusPing(b, rdb, g, d, func(rng *rand.Rand) error {
				_, err := l.Allow(ctx, "bench-"+strconv.Itoa(rng.IntN(100_000)))
				return err
			})
			b.ReportMetric(allow, "allow/s")
			b.ReportMetric(ping, "ping/s")
			b.ReportMetric(allow/ping, "rate_ratio")
			if g == 1 {
				b.ReportMetric(float64(p50(allowLat))/float64(p50(pingLat)), "p50_ratio")
				b.ReportMetric(1.15, "p50_ratio_target_max")
				b.ReportMetric(float64(p50(pingLat).Microseconds()), "ping_p50_us")
			}
			if g > 1 {
				b.ReportMetric(0.55, "rate_ratio_target_min")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkAllowManyVsPing measures AllowMany with batches of 100 users
// from 32 goroutines, in decisions per second, against PING from 32
// goroutines. Target: batch_ratio >= 3.
func BenchmarkAllowManyVsPing(b *testing.B) {
	rdb := client(b)
	l := uncachedLimiter(b, rdb)
	ctx := context.Background()
	const g, batch = 32, 100
	d := min(max(time.Duration(b.N)*time.Millisecond, time.Second), 10*time.Second)
	batches, ping, _, _ := versusPing(b, rdb, g, d, func(rng *rand.Rand) error {
		us := make([]string, batch)
		for i := range us {
			us[i] = "bench-" + strconv.Itoa(rng.IntN(100_000))
		}
		_, err := l.AllowMany(ctx, us)
		return err
	})
	b.ReportMetric(batches*batch, "decisions/s")
	b.ReportMetric(ping, "ping/s")
	b.ReportMetric(batches*batch/ping, "batch_ratio")
	b.ReportMetric(3, "batch_ratio_target_min")
	b.ReportMetric(0, "ns/op")
}
