package limiter

import (
	"context"
	"sync"
	"testing"
	"time"
)

// unitsObserver records what a BudgetObserver is told.
type unitsObserver struct {
	recordObserver
	mu            sync.Mutex
	spent, denied int
}

func (o *unitsObserver) ObserveUnits(budget string, spent bool, units int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if budget != "llm" {
		panic("budget " + budget)
	}
	if spent {
		o.spent += units
	} else {
		o.denied += units
	}
}

// A BudgetObserver is told the units settled and charged (spent) and the
// units refused (denied), on Redis and on the FailLocal fallback; a
// reservation, a cancel and a settle that fails report nothing.
func TestBudgetObserverUnits(t *testing.T) {
	obs := &unitsObserver{}
	cfg := budgetConfig(1000, time.Hour)
	cfg.Observer = obs
	cfg.RedisTimeout = 100 * time.Millisecond
	b, r := newTestBudget(t, cfg, BudgetSettings{})
	ctx := context.Background()
	check := func(spent, denied int) {
		t.Helper()
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if obs.spent != spent || obs.denied != denied {
			t.Fatalf("observed spent %d denied %d, want %d and %d", obs.spent, obs.denied, spent, denied)
		}
	}
	d := mustReserve(t, b, "o", 600)
	check(0, 0)
	mustSettle(t, b, "o", d.Token, 400)
	check(400, 0)
	if err := b.Settle(ctx, "o", d.Token, 400); err == nil {
		t.Fatal("a second settle succeeded")
	}
	check(400, 0)
	if d, err := b.Charge(ctx, "o", 100); err != nil || !d.Allowed {
		t.Fatalf("charge: %+v %v", d, err)
	}
	check(500, 0)
	if d := mustReserve(t, b, "o", 600); d.Allowed {
		t.Fatalf("600 over 500 spent of 1000: %+v", d)
	}
	check(500, 600)
	d = mustReserve(t, b, "o", 200)
	if err := b.Cancel(ctx, "o", d.Token); err != nil {
		t.Fatal(err)
	}
	check(500, 600)

	r.mr.Close() // FailLocal: a fresh budget in this process
	if d, err := b.Charge(ctx, "o", 900); err != nil || !d.Allowed || !d.Degraded {
		t.Fatalf("local charge: %+v %v", d, err)
	}
	if d, err := b.Charge(ctx, "o", 200); err != nil || d.Allowed {
		t.Fatalf("local charge past the limit: %+v %v", d, err)
	}
	check(1400, 800)
}
