package limiter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// roundTripHook counts a client's script round trips (EVALSHA or EVAL
// alone, or a pipeline of them) and the most in flight at once. A new
// connection's own commands (HELLO...) run through the hooks too, nested
// in the round trip that dialled it: they are not counted in n. sent
// counts every command, scripts or not, alone or in a pipeline.
type roundTripHook struct {
	n, inflight, most, sent atomic.Int64
}

func isScript(cmd redis.Cmder) bool { return cmd.Name() == "evalsha" || cmd.Name() == "eval" }

func (h *roundTripHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.sent.Add(1)
		if !isScript(cmd) {
			return next(ctx, cmd)
		}
		defer h.enter()()
		return next(ctx, cmd)
	}
}
func (h *roundTripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.sent.Add(int64(len(cmds)))
		if len(cmds) == 0 || !isScript(cmds[0]) {
			return next(ctx, cmds)
		}
		defer h.enter()()
		return next(ctx, cmds)
	}
}

func (h *roundTripHook) enter() (leave func()) {
	h.n.Add(1)
	now := h.inflight.Add(1)
	for {
		m := h.most.Load()
		if now <= m || h.most.CompareAndSwap(m, now) {
			break
		}
	}
	return func() { h.inflight.Add(-1) }
}

// TestConcurrentAllowExact: README, Coalescing: concurrent Allow calls
// share round trips, at most 4 in flight at once, and are still counted
// exactly. 64 goroutines x 20 calls: every user admitted exactly 20 times,
// in at most half as many round trips as calls.
func TestConcurrentAllowExact(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 20, time.Hour))
	hook := &roundTripHook{}
	r.rdb.AddHook(hook)
	const users, goroutines, rounds = 10, 64, 20
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			for i := 0; i < rounds; i++ {
				u := fmt.Sprint("u", (g+i)%users)
				d, err := l.Allow(context.Background(), u)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					mu.Lock()
					counts[u]++
					mu.Unlock()
				}
			}
		}(g)
	}
	close(start)
	wg.Wait()
	for i := 0; i < users; i++ {
		if c := counts[fmt.Sprint("u", i)]; c != 20 {
			t.Errorf("u%d admitted %d times, want exactly 20", i, c)
		}
	}
	waitDrained(t, l)
	calls := goroutines * rounds
	n, most := hook.n.Load(), hook.most.Load()
	t.Logf("%d calls in %d round trips (%.1f calls each), at most %d in flight", calls, n, float64(calls)/float64(n), most)
	if n*2 > int64(calls) {
		t.Errorf("%d calls took %d round trips: not batched (want at most %d)", calls, n, calls/2)
	}
	if most > 4 {
		t.Errorf("%d round trips in flight at once, want at most 4", most)
	}
}

// panickyObserver panics in its first n Redis observations.

type panickyObserver struct{ left atomic.Int32 }

func (o *panickyObserver) ObserveDecision(string, Decision) {}

func (o *panickyObserver) ObserveRedis(string, time.Duration, error) {
	if o.left.Add(-1) >= 0 {
		panic("observer bug")
	}
}

func TestBatcherSurvivesPanics(t *testing.T) {
	obs := &panickyObserver{}
	obs.left.Store(2 * maxInflight)
	cfg := userConfig(0, 20, time.Hour)
	cfg.Observer = obs
	l, _ := newTestLimiter(t, cfg)
	for i := 0; i < 2*maxInflight; i++ {
		func() {
			defer func() { _ = recover() }()
			_, _ = l.Allow(context.Background(), "p")
		}()
	}
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				_, _ = l.Allow(context.Background(), fmt.Sprint("u", g))
			}(g)
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		inflight, queued := l.batcherLoad()
		t.Fatalf("Allow wedged after panics: inflight %d, queue %d", inflight, queued)
	}
}

func TestQueuedCallLeavesOnCancel(t *testing.T) {
	l, _ := newTestLimiter(t, DefaultConfig())
	q := &queuedCall{user: "u", done: make(chan struct{}, 1)}
	other := &queuedCall{user: "v", done: make(chan struct{}, 1)}
	l.batcher.queue = []*queuedCall{other, q}
	if !l.unqueue(q) || len(l.batcher.queue) != 1 || l.batcher.queue[0] != other {
		t.Fatalf("unqueue: %v", l.batcher.queue)
	}
	if l.unqueue(q) {
		t.Fatal("unqueue of a call no longer queued reported success")
	}
	l.batcher.queue = nil
}

// batcherLoad reads the batcher's flights and queue length under its lock.
func (l *Limiter) batcherLoad() (inflight, queued int) {
	l.batcher.mu.Lock()
	defer l.batcher.mu.Unlock()
	return l.batcher.inflight, len(l.batcher.queue)
}

// waitDrained fails unless the batcher is idle within a few seconds: the
// last flight hands off just after answering its callers.
func waitDrained(t *testing.T, l *Limiter) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		inflight, queued := l.batcherLoad()
		if inflight == 0 && queued == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batcher not drained: inflight %d, queue %d", inflight, queued)
		}
		time.Sleep(time.Millisecond)
	}
}

// gateHook holds every script call until the test sends on gate (or the
// call's context ends), so a test can keep flights in the air.
type gateHook struct{ gate chan struct{} }

func (gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			select {
			case <-g.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return next(ctx, cmd)
	}
}

func (g gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		return next(ctx, cmds)
	}
}

// userObserver counts the per-user decisions it sees.
type userObserver struct{ allowed, denied atomic.Int32 }

func (o *userObserver) ObserveDecision(policy string, d Decision) {
	if policy != PolicyUser {
		return
	}
	if d.Allowed {
		o.allowed.Add(1)
	} else {
		o.denied.Add(1)
	}
}

func (o *userObserver) ObserveRedis(string, time.Duration, error) {}

// waitLoad polls the batcher until it has inflight flights and queued calls.
func waitLoad(t *testing.T, l *Limiter, inflight, queued int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		i, q := l.batcherLoad()
		if i == inflight && q == queued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batcher: inflight %d, queue %d; want %d, %d", i, q, inflight, queued)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCallerLeavesFlightByItsDeadline: callers taken into a flight that
// Redis does not answer leave by their own deadline, with an error
// wrapping it that says the request may still count; when the flight
// lands, what Redis decided for them reaches the Observer and the deny
// cache.
func TestCallerLeavesFlightByItsDeadline(t *testing.T) {
	cfg := userConfig(0, 1, time.Hour)
	cfg.RedisTimeout = 10 * time.Second // the flight outlives the callers
	cfg.LocalCacheSize = 100
	obs := &userObserver{}
	cfg.Observer = obs
	l, r := newTestLimiter(t, cfg)
	bg := context.Background()
	mustAllow(t, l, "full") // "full" is at its limit of 1: denied next
	if obs.allowed.Load() != 1 {
		t.Fatalf("observer saw %d admissions, want 1", obs.allowed.Load())
	}
	gate := make(chan struct{})
	r.rdb.AddHook(gateHook{gate})

	var wg sync.WaitGroup
	for i := 0; i < maxInflight; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := l.Allow(bg, fmt.Sprint("direct", i)); err != nil {
				t.Error(err)
			}
		}(i)
	}
	waitLoad(t, l, maxInflight, 0)

	const budget = 300 * time.Millisecond
	type result struct {
		err  error
		took time.Duration
	}
	results := make(chan result, 2)
	for _, u := range []string{"fresh", "full"} {
		go func() {
			ctx, cancel := context.WithTimeout(bg, budget)
			defer cancel()
			start := time.Now()
			_, err := l.Allow(ctx, u)
			results <- result{err, time.Since(start)}
		}()
	}
	waitLoad(t, l, maxInflight, 2)
	gate <- struct{}{} // one direct call lands: the queue takes off, and stalls
	waitLoad(t, l, maxInflight, 0)
	for range 2 {
		var res result
		select {
		case res = <-results:
		case <-time.After(5 * time.Second):
			t.Fatalf("callers in a stalled flight did not leave by their %v deadline", budget)
		}
		if !errors.Is(res.err, context.DeadlineExceeded) || !strings.Contains(res.err.Error(), "may still count") {
			t.Fatalf("a caller left in flight got %v; want DeadlineExceeded, saying the request may still count", res.err)
		}
		if res.took > budget+200*time.Millisecond {
			t.Fatalf("a caller left %v after a %v deadline", res.took, budget)
		}
	}
	close(gate) // Redis answers at last
	wg.Wait()
	waitDrained(t, l)

	if d := mustAllow(t, l, "fresh"); d.Allowed || d.Reason != ReasonWindow {
		t.Fatalf("after its caller left, the next request of a user with a limit of 1 got %+v; want the first counted", d)
	}
	obs.denied.Add(-1)
	// direct0..3, "fresh" (counted after its caller left) and "full" first.
	if a, d := obs.allowed.Load(), obs.denied.Load(); a != maxInflight+2 || d != 1 {
		t.Fatalf("observer saw %d admissions and %d denials, want %d and 1", a, d, maxInflight+2)
	}
	if d, ok := l.cache.get("full", time.Now()); !ok || d.Allowed {
		t.Fatalf("the denial of a caller that left is not cached: %+v, %v", d, ok)
	}
}
