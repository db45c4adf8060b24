package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// TestReplicaBudget: with FLOODGATE_USER_TOKEN_BUDGET set, each LLM call
// reserves its estimate and settles its tokens: some messages are held
// for the budget, and afterwards no user holds a reservation or has spent
// more than the budget (every answer costs at most its estimate).
func TestReplicaBudget(t *testing.T) {
	mr := loneReplica(t, "budget", 80)
	t.Setenv("DEMO_OUTPUT", "json")
	t.Setenv("FLOODGATE_USER_COOLDOWN", "0")
	// No slot cap: the spammers' messages all reach the budget at once.
	t.Setenv("FLOODGATE_MAX_CONCURRENT_USERS", "0")
	t.Setenv("FLOODGATE_USER_TOKEN_BUDGET", "700")
	out, errOut := runAsReplica(t)
	s, held := replicaSummary(t, out)
	if !slices.Contains(s.Wired, "budget") || s.Held["budget"] == 0 || s.Held[heldError] != 0 || s.Answered+held != s.Messages {
		t.Fatalf("wired %v, answered %d, held %v of %d messages\n%s", s.Wired, s.Answered, s.Held, s.Messages, errOut)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	users := 0
	for _, k := range mr.Keys() {
		prefix, rest, ok := strings.Cut(k, "{u:")
		user, isBudget := strings.CutSuffix(rest, "}:b:llm")
		if !ok || !isBudget {
			continue
		}
		cfg := limiter.DefaultConfig()
		cfg.KeyPrefix, cfg.UserTokenBudget = prefix, 700
		lim, err := limiter.New(rdb, cfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := lim.Budget("llm", limiter.BudgetSettings{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := b.Peek(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		if st.Reserved != 0 || st.Spent > 700 {
			t.Errorf("%s: %+v: a reservation left, or more than the budget spent", user, st)
		}
		users++
	}
	if users == 0 {
		t.Fatalf("no budget keys among %v", mr.Keys())
	}
}
