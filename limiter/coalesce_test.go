package limiter

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentAllowExact drives the coalescing path (more callers than
// maxInflight) and counts admissions exactly.
func TestConcurrentAllowExact(t *testing.T) {
	l, _ := newTestLimiter(t, userConfig(0, 20, time.Hour))
	const users, goroutines, rounds = 10, 64, 20
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
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
	wg.Wait()
	for i := 0; i < users; i++ {
		if c := counts[fmt.Sprint("u", i)]; c != 20 {
			t.Errorf("u%d admitted %d times, want exactly 20", i, c)
		}
	}
	if l.batcher.inflight != 0 || len(l.batcher.queue) != 0 {
		t.Fatalf("batcher not drained: inflight %d, queue %d", l.batcher.inflight, len(l.batcher.queue))
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
		t.Fatalf("Allow wedged after panics: inflight %d, queue %d", l.batcher.inflight, len(l.batcher.queue))
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
