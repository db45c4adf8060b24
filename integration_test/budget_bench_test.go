package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// BenchmarkBudgetVsAllow prices one LLM call's budget (Reserve, then
// Settle) against one Allow and one PING, on the same server in the same
// run, slices alternating so load from elsewhere lands on all alike.
// Budget and window users (10,000 each) start with 19 entries spread over
// the hour, so each decision works on a ~20-entry set as in production.
// Metrics, at 1 and 32 goroutines:
//
//	call_p50_us, allow_p50_us, ping_p50_us   client p50 of Reserve+Settle, Allow, PING
//	call_allow_p50_ratio, call_ping_p50_ratio
//	call_server_us, allow_server_us          INFO commandstats µs (EVALSHA+EVAL) per
//	                                         LLM call (two scripts) and per Allow
//	reserve_settle_server_us                 the same per script (call_server_us / 2)
//
// Run: go test ./integration_test -run '^$' -bench BudgetVsAllow -benchtime 1x
func BenchmarkBudgetVsAllow(b *testing.B) {
	rdb := client(b)
	cfg := limiter.DefaultConfig()
	cfg.LocalCacheSize = 0
	cfg.UserCooldown = 0
	cfg.MaxRequestsPerUserHour = limiter.MaxWindowRequests
	l := newLimiter(b, rdb, cfg)
	budget, err := l.Budget("llm", limiter.BudgetSettings{Limit: 10_000_000})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const users = 10_000
	if err := fillWindows(ctx, l, users, 19); err != nil {
		b.Fatal(err)
	}
	if _, err := fillBudgets(ctx, rdb, budget, users, 19); err != nil {
		b.Fatal(err)
	}
	ops := map[string]func(rng *rand.Rand) error{
		"call": func(rng *rand.Rand) error {
			u := "user_" + strconv.Itoa(rng.IntN(users))
			d, err := budget.Reserve(ctx, u, 500)
			if err != nil {
				return err
			}
			if !d.Allowed {
				return fmt.Errorf("reserve denied: %+v", d)
			}
			return budget.Settle(ctx, u, d.Token, 400)
		},
		"allow": func(rng *rand.Rand) error {
			_, err := l.Allow(ctx, "user_"+strconv.Itoa(rng.IntN(users)))
			return err
		},
		"ping": func(*rand.Rand) error { return rdb.Ping(ctx).Err() },
	}
	for _, g := range []int{1, 32} {
		b.Run("goroutines="+strconv.Itoa(g), func(b *testing.B) {
			lat := map[string][]time.Duration{}
			usec := map[string]float64{}
			count := map[string]int64{}
			const slices = 6
			for i := 0; i < slices; i++ {
				for _, name := range []string{"call", "allow", "ping"} {
					if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
						b.Fatal(err)
					}
					n, l := runFor(b, g, 250*time.Millisecond, ops[name])
					us, err := serverUsec(ctx, rdb, name == "ping")
					if err != nil {
						b.Fatal(err)
					}
					lat[name] = append(lat[name], l...)
					usec[name] += us
					count[name] += n
				}
			}
			call, allow, ping := p50(lat["call"]), p50(lat["allow"]), p50(lat["ping"])
			b.ReportMetric(float64(call.Nanoseconds())/1e3, "call_p50_us")
			b.ReportMetric(float64(allow.Nanoseconds())/1e3, "allow_p50_us")
			b.ReportMetric(float64(ping.Nanoseconds())/1e3, "ping_p50_us")
			b.ReportMetric(float64(call)/float64(allow), "call_allow_p50_ratio")
			b.ReportMetric(float64(call)/float64(ping), "call_ping_p50_ratio")
			b.ReportMetric(usec["call"]/float64(count["call"]), "call_server_us")
			b.ReportMetric(usec["call"]/float64(2*count["call"]), "reserve_settle_server_us")
			b.ReportMetric(usec["allow"]/float64(count["allow"]), "allow_server_us")
			b.ReportMetric(usec["ping"]/float64(count["ping"]), "ping_server_us")
			b.ReportMetric(float64(count["call"])/(slices*0.25), "calls/s")
			b.ReportMetric(float64(count["allow"])/(slices*0.25), "allows/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// fillWindows gives users "user_0".. entries requests each in the
// per-message window, spread over the last hour.
func fillWindows(ctx context.Context, l *limiter.Limiter, users, entries int) error {
	now := time.Now()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < users; i++ {
		times := make([]time.Time, entries)
		for j := range times {
			times[j] = now.Add(-time.Duration(rng.Int64N(int64(58 * time.Minute))))
		}
		if err := l.Import(ctx, "user_"+strconv.Itoa(i), times); err != nil {
			return err
		}
	}
	return nil
}

// fillBudgets gives users "user_0".. spends settled spends of 100..2,000
// units each, spread over the last hour, laid out as Reserve and Settle
// leave them (see budget_reserve.lua), and returns each user's sum.
func fillBudgets(ctx context.Context, rdb *redis.Client, budget *limiter.Budget, users, spends int) ([]int, error) {
	sums := make([]int, users)
	base := time.Now().Add(-time.Hour + time.Minute).UnixMilli()
	for lo := 0; lo < users; lo += 1000 {
		pipe := rdb.Pipeline()
		for i := lo; i < min(lo+1000, users); i++ {
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			key, err := budget.UserKey("user_" + strconv.Itoa(i))
			if err != nil {
				return nil, err
			}
			zs := []redis.Z{{Score: float64(base), Member: "b"}}
			for slot := 0; slot < spends; slot++ {
				units := 100 + rng.IntN(1901)
				sums[i] += units
				zs = append(zs, redis.Z{Score: float64(rng.Int64N(int64(58 * time.Minute / time.Millisecond))), Member: units*128 + slot})
			}
			pipe.ZAdd(ctx, key, zs...)
			pipe.PExpire(ctx, key, time.Hour)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
	}
	return sums, nil
}
