package limiter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// Budget's methods keep the promise of TestEveryCallReturnsByItsDeadline
// (README, "When Redis is in trouble"): against a Redis that accepts
// connections and never answers, with a far longer RedisTimeout, each
// returns by its context's deadline.
func TestBudgetCallsReturnByTheirDeadline(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RedisURL = stalledRedis(t)
	cfg.RedisTimeout = 10 * time.Second
	cfg.LocalCacheSize = 0
	cfg.UserTokenBudget = 1000
	rdb, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	l, err := New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Budget("llm", BudgetSettings{})
	if err != nil {
		t.Fatal(err)
	}
	// A well-formed token (slot.units.nonce), so Settle and Cancel go to
	// Redis rather than refusing it up front.
	const token = "0.10.0123456789abcdef"
	calls := map[string]func(context.Context) error{
		"Reserve": func(ctx context.Context) error { _, err := b.Reserve(ctx, "u", 10); return err },
		"Charge":  func(ctx context.Context) error { _, err := b.Charge(ctx, "u", 10); return err },
		"Settle":  func(ctx context.Context) error { return b.Settle(ctx, "u", token, 5) },
		"Cancel":  func(ctx context.Context) error { return b.Cancel(ctx, "u", token) },
		"Peek":    func(ctx context.Context) error { _, err := b.Peek(ctx, "u"); return err },
	}
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
				t.Errorf("Budget.%s took %v with a %v deadline (%v)", name, took, deadline, err)
			}
			if errors.Is(err, ErrInvalidArgument) {
				t.Errorf("Budget.%s refused its arguments before reaching Redis: %v", name, err)
			}
		}()
	}
	wg.Wait()
}
