package integration_test

import (
	"context"
	"testing"

	"github.com/floodgate/floodgate/limiter"
)

// TestACLUserBudget: the README's least-privilege ACL user (docs/reliability.md's
// rule) also runs a token Budget, before and after SCRIPT FLUSH.
// TestACLCoversScripts checks the rule names every command the budget
// scripts call; this runs them as that user.
func TestACLUserBudget(t *testing.T) {
	skipIfShort(t)
	addr, admin := startAuthServer(t)
	ctx := context.Background()
	l := authLimiter(t, "redis://floodgate:"+botPassword+"@"+addr)
	b, err := l.Budget("llm", limiter.BudgetSettings{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	exercise := func(round string) {
		t.Helper()
		user := round + "-viewer"
		d, err := b.Reserve(ctx, user, 300)
		if !shared(t, round+" Reserve", d, err).Allowed || d.Remaining != 700 {
			t.Fatalf("%s: Reserve = %+v", round, d)
		}
		if err := b.Settle(ctx, user, d.Token, 200); err != nil {
			t.Fatalf("%s: Settle: %v", round, err)
		}
		d, err = b.Reserve(ctx, user, 100)
		shared(t, round+" second Reserve", d, err)
		if err := b.Cancel(ctx, user, d.Token); err != nil {
			t.Fatalf("%s: Cancel: %v", round, err)
		}
		d, err = b.Charge(ctx, user, 50)
		if !shared(t, round+" Charge", d, err).Allowed {
			t.Fatalf("%s: Charge = %+v", round, d)
		}
		st, err := b.Peek(ctx, user)
		if err != nil || st.Spent != 250 || st.Reserved != 0 || st.Remaining != 750 {
			t.Fatalf("%s: Peek = %+v, %v; want 250 spent, 750 left", round, st, err)
		}
	}
	exercise("first")
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	exercise("flushed")
}
