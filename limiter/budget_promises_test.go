package limiter

import (
	"context"
	"testing"
	"time"
)

// Budget under FailClosed waits 1 s like every other policy (README,
// "When Redis is in trouble"; docs/reliability.md, "closed waits 1 s, in
// every policy"): TestFailClosedWaitsOneSecondEverywhere covers the rest.
func TestBudgetFailClosedWaitsOneSecond(t *testing.T) {
	b := downBudget(t, FailClosed)
	want := Decision{Reason: ReasonRedisDown, RetryAfter: time.Second, ResetAfter: time.Second, Degraded: true}
	ctx := context.Background()
	for what, call := range map[string]func() (Decision, error){
		"Reserve": func() (Decision, error) { return b.Reserve(ctx, "u", 10) },
		"Charge":  func() (Decision, error) { return b.Charge(ctx, "u", 10) },
	} {
		if d, err := call(); err != nil || d != want {
			t.Errorf("%s = %+v, %v; want %+v", what, d, err, want)
		}
	}
}

// A user's budget key expires one window after their newest entry (README,
// "Keys"), so an idle user costs nothing and no spend is forgotten early.
func TestBudgetKeyExpiresOneWindowAfterNewestEntry(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(1000, 10*time.Minute), BudgetSettings{Lease: time.Minute})
	key := "floodgate:{u:k}:b:llm"
	r.at(time.Minute)
	d := mustReserve(t, b, "k", 100)
	if ttl := r.mr.TTL(key); ttl != 10*time.Minute {
		t.Fatalf("TTL after a reservation: %v, want the window (10m)", ttl)
	}
	mustSettle(t, b, "k", d.Token, 50)
	r.at(4 * time.Minute)
	if _, err := b.Charge(context.Background(), "k", 20); err != nil {
		t.Fatal(err)
	}
	if ttl := r.mr.TTL(key); ttl != 10*time.Minute {
		t.Fatalf("TTL after a later charge: %v, want the window (10m) from the newest entry", ttl)
	}
	r.at(14*time.Minute - time.Millisecond)
	if st := mustPeekBudget(t, b, "k"); st.Spent != 20 {
		t.Fatalf("just before the newest entry ages out: %+v, want 20 spent", st)
	}
	r.at(14*time.Minute + time.Millisecond)
	if r.mr.Exists(key) {
		t.Fatalf("key still there one window after the newest entry")
	}
}

// A Budget denial from the per-process fallback a nanosecond before enough
// ages out still waits 1 ms (README: "at least 1 ms when denied, from every
// policy and every fallback").
func TestBudgetFallbackDenialWaitsAtLeast1ms(t *testing.T) {
	lb := &localBudget{users: map[string][]localSpend{}}
	t0 := time.Now()
	if d := lb.admit(t0, "u", 100, "", 100, time.Minute, time.Second); !d.Allowed {
		t.Fatalf("first charge: %+v", d)
	}
	d := degraded(FailLocal, func() Decision {
		return lb.admit(t0.Add(time.Minute-time.Nanosecond), "u", 1, "", 100, time.Minute, time.Second)
	})
	if d.Allowed || d.Reason != ReasonBudget || d.RetryAfter != time.Millisecond || d.ResetAfter < time.Millisecond {
		t.Fatalf("denial 1 ns before the spend ages out: %+v, want a 1 ms wait", d)
	}
}
