package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// TestCallsReturnByTheirDeadline: Redis is killed with SIGKILL, or stalls
// (CLIENT PAUSE: it accepts connections and never answers), under 16
// goroutines whose every call has its own 500 ms context, while the
// Limiter's RedisTimeout is 2 s. Promised: every call returns by its
// context's deadline, give or take scheduling (the slowest is asserted
// against 500 ms + 200 ms + the worst lag seen in waking a sleeping
// goroutine, which a loaded machine stretches),
// with a decision or an error wrapping context.DeadlineExceeded; calls
// taken into a coalesced batch leave without waiting for it.
func TestCallsReturnByTheirDeadline(t *testing.T) {
	skipIfShort(t) // -short keeps TestServeReadinessRedisRestart
	needRedisServer(t)
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, srv *redisproc.Server, admin *redis.Client)
	}{
		{"SIGKILL", func(t *testing.T, srv *redisproc.Server, _ *redis.Client) { srv.Kill() }},
		{"CLIENT PAUSE", func(t *testing.T, _ *redisproc.Server, admin *redis.Client) {
			if err := admin.Do(context.Background(), "CLIENT", "PAUSE", 2500, "ALL").Err(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { deadlineUnderOutage(t, tc.break_) })
	}
}

func deadlineUnderOutage(t *testing.T, breakRedis func(*testing.T, *redisproc.Server, *redis.Client)) {
	// go-redis keeps redialling a dead server once a second until its
	// pool closes; that is the client's, not ours.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
	ctx := context.Background()
	srv, err := redisproc.Start(ctx, redisproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()

	const (
		budget = 500 * time.Millisecond
		// Scheduling beyond the measured wake-up lag (below). Before calls
		// left their batches, the stall case took RedisTimeout: 2 s.
		slack = 200 * time.Millisecond
	)
	rdb := redis.NewClient(&redis.Options{
		Addr: srv.Addr, ContextTimeoutEnabled: true, PoolSize: 32, MaxRetries: 1,
	})
	defer rdb.Close()
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 2 * time.Second // longer than the callers' deadlines
	cfg.UserCooldown = 0
	cfg.MaxRequestsPerUserHour = 100
	cfg.LocalCacheSize = 0 // every call goes to Redis
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}

	var (
		calls, degraded, expired atomic.Int64
		slowest                  atomic.Int64 // ns
		mu                       sync.Mutex
		bad                      []error
		worstCall                string
		began                    = time.Now()
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// How late this machine wakes a sleeping goroutine (the timers that end
	// contexts are no more punctual): the scheduling the promise allows.
	var lag atomic.Int64 // ns, the worst seen
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			time.Sleep(5 * time.Millisecond)
			if late := int64(time.Since(t0) - 5*time.Millisecond); late > lag.Load() {
				lag.Store(late)
			}
		}
	}()
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, budget)
				start := time.Now()
				var d limiter.Decision
				var err error
				if i%4 == 3 {
					var ds []limiter.Decision
					ds, err = l.AllowMany(cctx, []string{fmt.Sprint("m", g), fmt.Sprint("n", g)})
					if len(ds) > 0 {
						d = ds[0]
					}
				} else {
					d, err = l.Allow(cctx, fmt.Sprint("u", g, "-", i%40))
				}
				took := time.Since(start)
				cancel()
				calls.Add(1)
				for {
					old := slowest.Load()
					if int64(took) <= old {
						break
					}
					if slowest.CompareAndSwap(old, int64(took)) {
						mu.Lock()
						worstCall = fmt.Sprintf("call %d of goroutine %d at %v: %+v, %v", i, g, start.Sub(began).Round(time.Millisecond), d, err)
						mu.Unlock()
						break
					}
				}
				switch {
				case err == nil && d.Degraded:
					degraded.Add(1)
				case err == nil:
				case errors.Is(err, context.DeadlineExceeded):
					expired.Add(1)
				default:
					mu.Lock()
					bad = append(bad, err)
					mu.Unlock()
				}
			}
		}(g)
	}
	time.Sleep(300 * time.Millisecond)
	t.Logf("breaking Redis at %v", time.Since(began).Round(time.Millisecond))
	breakRedis(t, srv, admin)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	// Batches still in the air end within RedisTimeout: let them, before
	// goleak looks.
	time.Sleep(cfg.RedisTimeout)

	worst := time.Duration(slowest.Load())
	late := time.Duration(lag.Load())
	t.Logf("slowest: %s", worstCall)
	t.Logf("calls=%d degraded=%d expired=%d other errors=%d slowest=%v, worst wake-up lag %v", calls.Load(), degraded.Load(), expired.Load(), len(bad), worst, late)
	if len(bad) > 0 {
		t.Errorf("%d errors neither a decision nor the caller's deadline, e.g. %v", len(bad), bad[0])
	}
	if degraded.Load()+expired.Load() == 0 {
		t.Error("the outage changed nothing: no degraded decision, no expired call")
	}
	if worst > budget+slack+late {
		t.Errorf("a call returned after %v; its context ended at %v (slack %v, wake-up lag %v)", worst, budget, slack, late)
	}
}
