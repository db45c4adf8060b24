package limiter

import (
	"context"
	"testing"
)

// Budget's methods keep the promise of TestEveryCallReturnsByItsDeadline
// (README, "When Redis is in trouble"): against a Redis that accepts
// connections and never answers, with a far longer RedisTimeout, each
// returns by its context's deadline.
func TestBudgetCallsReturnByTheirDeadline(t *testing.T) {
	cfg := DefaultConfig()
	cfg.UserTokenBudget = 1000
	b, err := stalledLimiter(t, cfg).Budget("llm", BudgetSettings{})
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
	returnByDeadline(t, "Budget.", calls)
}
