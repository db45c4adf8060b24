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

// outageStats is what the load saw in one phase.
type outageStats struct {
	calls, degraded, errors atomic.Int64
	slowest                 atomic.Int64 // ns
}

func (s *outageStats) record(took time.Duration, degraded bool, err error) {
	s.calls.Add(1)
	if degraded {
		s.degraded.Add(1)
	}
	if err != nil {
		s.errors.Add(1)
	}
	raiseMax(&s.slowest, int64(took))
}

// raiseMax sets m to v if v is larger, and says whether it did.
func raiseMax(m *atomic.Int64, v int64) bool {
	for {
		old := m.Load()
		if v <= old {
			return false
		}
		if m.CompareAndSwap(old, v) {
			return true
		}
	}
}

// untilStopped starts n goroutines, counted by wg, each calling call with
// its number g and i = 0, 1, ... until stop is closed.
func untilStopped(wg *sync.WaitGroup, stop <-chan struct{}, n int, call func(g, i int)) {
	for g := range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				call(g, i)
			}
		})
	}
}

// TestKillAndRestartRedis kills redis-server with SIGKILL under load from
// 16 goroutines (per-user Allow, a Bucket and Slots, all FailLocal), then
// starts a new one on the same port. Promised: no panic, no goroutine
// leak, every call returns within its timeout (plus scheduling slack),
// degraded decisions instead of errors during the outage, and shared
// limits again afterwards, with the scripts reloaded after NOSCRIPT.
func TestKillAndRestartRedis(t *testing.T) {
	skipIfShort(t) // -short keeps TestServeReadinessRedisRestart
	needRedisServer(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	ctx := context.Background()
	srv, err := redisproc.Start(ctx, redisproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Stop() }()
	port := srv.Port

	const timeout = 500 * time.Millisecond
	rdb := redis.NewClient(&redis.Options{
		Addr: srv.Addr, ContextTimeoutEnabled: true,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		PoolSize: 32, MaxRetries: 1,
	})
	defer rdb.Close()
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = timeout
	cfg.UserCooldown = 0
	cfg.MaxRequestsPerUserHour = 5
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bucket := mustBucket(t, l, "api", 1000, 10)
	slots := mustSlots(t, l, "llm", 7, time.Second)
	// Warm up: dial the pool and load every script before anything is
	// timed, so the first calls of a -race run do not count as slow.
	if _, err := l.Allow(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Allow(ctx); err != nil {
		t.Fatal(err)
	}
	if lease, err := slots.TryAcquire(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	} else if err := lease.Release(ctx); err != nil {
		t.Fatal(err)
	}

	var phase atomic.Pointer[outageStats]
	before, during, after, transition := &outageStats{}, &outageStats{}, &outageStats{}, &outageStats{}
	phase.Store(before)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	untilStopped(&wg, stop, 16, func(g, i int) {
		st := phase.Load()
		start := time.Now()
		var degraded bool
		var err error
		switch i % 3 {
		case 0:
			var d limiter.Decision
			d, err = l.Allow(ctx, "load-"+string(rune('a'+g)))
			degraded = d.Degraded
		case 1:
			var d limiter.Decision
			d, err = bucket.Allow(ctx)
			degraded = d.Degraded
		case 2:
			var lease *limiter.Lease
			lease, err = slots.TryAcquire(ctx, "h")
			if errors.Is(err, limiter.ErrNoSlot) {
				err = nil
			} else if err == nil {
				degraded = lease.Degraded()
				_ = lease.Release(ctx) // may be ErrRedisUnavailable mid-outage
			}
		}
		if phase.Load() != st {
			st = transition // straddled a phase change
		}
		st.record(time.Since(start), degraded, err)
		time.Sleep(time.Millisecond)
	})

	time.Sleep(500 * time.Millisecond)
	phase.Store(during)
	killedAt := time.Now()
	srv.Kill()
	time.Sleep(1500 * time.Millisecond)

	srv2, err := redisproc.Start(ctx, redisproc.Options{Port: port})
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("restart on port %d: %v", port, err)
	}
	defer srv2.Stop()
	restartedAt := time.Now()
	// Shared limits resume by themselves: wait for a non-degraded answer.
	var recovered time.Duration
	for deadline := time.Now().Add(10 * time.Second); ; {
		d, err := l.Allow(ctx, "probe-after-restart")
		if err == nil && !d.Degraded {
			recovered = time.Since(restartedAt)
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("still degraded 10 s after the restart: %+v %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	phase.Store(after)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	for _, p := range []struct {
		name string
		s    *outageStats
	}{{"before", before}, {"during", during}, {"after", after}} {
		t.Logf("%-6s calls=%d degraded=%d errors=%d slowest=%v", p.name, p.s.calls.Load(), p.s.degraded.Load(), p.s.errors.Load(), time.Duration(p.s.slowest.Load()))
	}
	t.Logf("outage %v, shared limits back %v after the restart", restartedAt.Sub(killedAt).Round(time.Millisecond), recovered.Round(time.Millisecond))

	if before.calls.Load() == 0 || during.calls.Load() == 0 || after.calls.Load() == 0 {
		t.Fatal("a phase saw no calls")
	}
	if before.degraded.Load() != 0 || before.errors.Load() != 0 {
		t.Errorf("before the kill: %d degraded, %d errors", before.degraded.Load(), before.errors.Load())
	}
	if during.degraded.Load() == 0 {
		t.Error("no degraded decision while Redis was down")
	}
	if during.errors.Load() != 0 {
		t.Errorf("%d errors during the outage; FailLocal should answer every call", during.errors.Load())
	}
	if after.degraded.Load() != 0 || after.errors.Load() != 0 {
		t.Errorf("after recovery: %d degraded, %d errors", after.degraded.Load(), after.errors.Load())
	}
	// Each Redis call is bounded by RedisTimeout; a call makes at most two
	// (a script and, after NOSCRIPT, its reload). The slack is for a
	// shared 2-core machine under -race.
	bound := 2*timeout + time.Second
	for _, s := range []*outageStats{before, during, after, transition} {
		if slowest := time.Duration(s.slowest.Load()); slowest > bound {
			t.Errorf("a call took %v, bound %v", slowest, bound)
		}
	}
	// The new server has no scripts: decisions after the restart prove
	// NOSCRIPT was handled. And state is shared again: exactly 5 admitted.
	n := 0
	for i := 0; i < 10; i++ {
		d, err := l.Allow(ctx, "exact-after-restart")
		if err != nil || d.Degraded {
			t.Fatalf("after restart: %+v %v", d, err)
		}
		if d.Allowed {
			n++
		}
	}
	if n != 5 {
		t.Errorf("after restart admitted %d of 10, want the limit 5", n)
	}
}

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
	untilStopped(&wg, stop, 1, func(int, int) {
		t0 := time.Now()
		time.Sleep(5 * time.Millisecond)
		raiseMax(&lag, int64(time.Since(t0)-5*time.Millisecond))
	})
	untilStopped(&wg, stop, 16, func(g, i int) {
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
		if raiseMax(&slowest, int64(took)) {
			mu.Lock()
			worstCall = fmt.Sprintf("call %d of goroutine %d at %v: %+v, %v", i, g, start.Sub(began).Round(time.Millisecond), d, err)
			mu.Unlock()
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
	})
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

// roundTrips counts a client's round trips: each command sent alone and
// each pipeline (one write, one read) is one.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestNoScriptAfterFlush: docs/reliability.md, Outages and restarts: after
// SCRIPT FLUSH a decision makes at most two round trips and a batch at
// most three, the state is kept, and every later call makes one.
func TestNoScriptAfterFlush(t *testing.T) {
	rdb := client(t)
	rt := &roundTrips{}
	rdb.AddHook(rt)
	cfg := limiter.DefaultConfig()
	cfg.LocalCacheSize = 0
	l := newLimiter(t, rdb, cfg)
	// New's eviction check reads INFO on rdb in the background; let it
	// finish so its round trip is not counted as the decisions'.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := l.EvictionRisk(); !errors.Is(err, limiter.ErrEvictionUnchecked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the eviction check did not finish within 5 s")
		}
	}
	ctx := context.Background()
	if d, err := l.Allow(ctx, "n1"); err != nil || !d.Allowed {
		t.Fatalf("first Allow: %+v, %v", d, err)
	}
	flush := func() {
		t.Helper()
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		rt.n.Store(0)
	}
	// counted runs f and fails if it made more than most round trips.
	counted := func(what string, most int64, f func()) {
		t.Helper()
		before := rt.n.Load()
		f()
		if n := rt.n.Load() - before; n > most || n < 1 {
			t.Errorf("%s: %d round trips, want 1 to %d", what, n, most)
		}
	}
	flush()
	counted("Allow after SCRIPT FLUSH", 2, func() {
		d, err := l.Allow(ctx, "n1")
		if err != nil {
			t.Fatalf("Allow after SCRIPT FLUSH: %v", err)
		}
		if d.Allowed || d.Reason != limiter.ReasonCooldown {
			t.Fatalf("after SCRIPT FLUSH the state was lost: %+v", d)
		}
	})
	counted("the next Allow", 1, func() { _, _ = l.Allow(ctx, "n2") })

	users := make([]string, 300)
	for i := range users {
		users[i] = fmt.Sprintf("batch_%03d", i)
	}
	flush()
	counted("AllowMany of 300 users after SCRIPT FLUSH", 3, func() {
		ds, err := l.AllowMany(ctx, users)
		if err != nil {
			t.Fatalf("AllowMany after SCRIPT FLUSH: %v", err)
		}
		for i, d := range ds {
			if !d.Allowed || d.Degraded {
				t.Fatalf("AllowMany[%d] after SCRIPT FLUSH: %+v", i, d)
			}
		}
	})
	counted("the next AllowMany of 300 users", 1, func() {
		ds, err := l.AllowMany(ctx, users)
		if err != nil {
			t.Fatal(err)
		}
		if ds[0].Allowed || ds[299].Allowed {
			t.Fatalf("AllowMany again inside the cooldown admitted: %+v, %+v", ds[0], ds[299])
		}
	})
}
