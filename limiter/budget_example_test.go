package limiter_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// Reserve before the LLM call with an estimate (prompt + max_tokens),
// Settle after it with the usage the model reported: a viewer with 20,000
// tokens an hour.
func ExampleBudget_Reserve() {
	cfg := limiter.DefaultConfig()
	cfg.UserTokenBudget = 20_000 // FLOODGATE_USER_TOKEN_BUDGET
	mr, lim := exampleLimiter(cfg)
	defer mr.Close()
	llm := check(lim.Budget("llm", limiter.BudgetSettings{}))
	ctx := context.Background()

	d, err := llm.Reserve(ctx, "viewer", 1500)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("allowed:", d.Allowed, "remaining:", d.Remaining)
	// ... the call to the model, which used 900 tokens ...
	if err := llm.Settle(ctx, "viewer", d.Token, 900); err != nil {
		log.Fatal(err)
	}
	st, err := llm.Peek(ctx, "viewer")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("spent:", st.Spent, "remaining:", st.Remaining)

	// 40 minutes later the viewer has spent 19,000.
	mr.SetTime(time.Date(2026, 11, 26, 12, 40, 0, 0, time.UTC))
	if _, err := llm.Charge(ctx, "viewer", 18_100); err != nil {
		log.Fatal(err)
	}
	d, err = llm.Reserve(ctx, "viewer", 1500)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("allowed:", d.Allowed, d.Reason, "retry after:", d.RetryAfter)
	// Output:
	// allowed: true remaining: 18500
	// spent: 900 remaining: 19100
	// allowed: false budget retry after: 20m0s
}
