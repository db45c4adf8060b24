package limiter

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// budgetConfig is DefaultConfig with a token budget of limit per window.
func budgetConfig(limit int, window time.Duration) Config {
	cfg := DefaultConfig()
	cfg.UserTokenBudget = limit
	cfg.UserTokenWindow = window
	cfg.MaxIdleTime = max(cfg.MaxIdleTime, window)
	return cfg
}

func newTestBudget(t *testing.T, cfg Config, s BudgetSettings) (*Budget, *testRedis) {
	t.Helper()
	l, r := newTestLimiter(t, cfg)
	b, err := l.Budget("llm", s)
	return must(t, b, err, "Budget"), r
}

func mustReserve(t *testing.T, b *Budget, user string, n int) Decision {
	t.Helper()
	d, err := b.Reserve(context.Background(), user, n)
	return must(t, d, err, "Reserve(%q, %d)", user, n)
}

func mustSettle(t *testing.T, b *Budget, user, token string, n int) {
	t.Helper()
	if err := b.Settle(context.Background(), user, token, n); err != nil {
		t.Fatalf("Settle(%q, %q, %d): %v", user, token, n, err)
	}
}

func mustPeekBudget(t *testing.T, b *Budget, user string) BudgetStatus {
	t.Helper()
	st, err := b.Peek(context.Background(), user)
	return must(t, st, err, "Peek(%q)", user)
}

// snapshot is everything Redis holds for key, TTL included.
func snapshot(t *testing.T, r *testRedis, key string) string {
	t.Helper()
	z, err := r.rdb.ZRangeWithScores(context.Background(), key, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%v ttl=%v", z, r.mr.TTL(key))
}

// The README's worked example: a viewer with 20,000 tokens an hour.
func TestBudgetWorkedExample(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(20_000, time.Hour), BudgetSettings{})
	d := mustReserve(t, b, "viewer", 1500)
	if !d.Allowed || d.Remaining != 18_500 || d.ResetAfter != time.Hour || d.Token == "" {
		t.Fatalf("first reservation: %+v", d)
	}
	r.advance(10 * time.Second)
	mustSettle(t, b, "viewer", d.Token, 900)
	if st := mustPeekBudget(t, b, "viewer"); st != (BudgetStatus{Spent: 900, Remaining: 19_100, OldestAgesOut: time.Hour - 10*time.Second, ResetAfter: time.Hour - 10*time.Second}) {
		t.Fatalf("after settling at 900: %+v", st)
	}
	r.at(10 * time.Minute)
	d = mustReserve(t, b, "viewer", 1500)
	if st := mustPeekBudget(t, b, "viewer"); st != (BudgetStatus{Spent: 900, Reserved: 1500, Reservations: 1, Remaining: 17_600, OldestAgesOut: 50 * time.Minute, ResetAfter: time.Hour}) {
		t.Fatalf("the BudgetStatus doc's example: %+v", st)
	}
	mustSettle(t, b, "viewer", d.Token, 1500)
	// By 12:40 the viewer has spent 19,000.
	r.at(40 * time.Minute)
	if d, err := b.Charge(context.Background(), "viewer", 19_000-2400); err != nil || !d.Allowed || d.Remaining != 1000 {
		t.Fatalf("Charge up to 19,000: %+v, %v", d, err)
	}
	d = mustReserve(t, b, "viewer", 1500)
	if d.Allowed || d.Reason != ReasonBudget || d.Remaining != 1000 || d.RetryAfter != 20*time.Minute || d.Token != "" {
		t.Fatalf("1,500 more at 12:40: %+v, want denied for 20m", d)
	}
	r.at(60*time.Minute - time.Millisecond)
	if d := mustReserve(t, b, "viewer", 1500); d.Allowed || d.RetryAfter != time.Millisecond {
		t.Fatalf("a millisecond early: %+v", d)
	}
	r.at(60 * time.Minute)
	if d := mustReserve(t, b, "viewer", 1500); !d.Allowed || d.Remaining != 20_000-18_100-1500 {
		t.Fatalf("at 13:00, when the 900 aged out: %+v", d)
	}
}

// The window slides: each spend frees its units exactly one window after
// it was reserved, whenever it was settled.
func TestBudgetWindowSlides(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(100, time.Minute), BudgetSettings{})
	ctx := context.Background()
	for i := 0; i < 4; i++ { // 25 units at 0, 10, 20, 30 s
		r.at(time.Duration(i) * 10 * time.Second)
		if d, _ := b.Charge(ctx, "u", 25); !d.Allowed {
			t.Fatalf("charge %d: %+v", i, d)
		}
	}
	for _, tc := range []struct {
		at         time.Duration
		n          int
		allowed    bool
		retryAfter time.Duration
	}{
		{40 * time.Second, 1, false, 20 * time.Second},  // full: the first ages out at 60 s
		{50 * time.Second, 50, false, 20 * time.Second}, // needs two aged out: 70 s
		{60 * time.Second, 25, true, 0},                 // the first is out
		{60 * time.Second, 1, false, 10 * time.Second},
	} {
		r.at(tc.at)
		d, err := b.Charge(ctx, "u", tc.n)
		if err != nil || d.Allowed != tc.allowed || d.RetryAfter != tc.retryAfter {
			t.Fatalf("at %v, %d units: %+v, %v; want allowed %v, RetryAfter %v", tc.at, tc.n, d, err, tc.allowed, tc.retryAfter)
		}
	}
	r.at(3 * time.Minute)
	if st := mustPeekBudget(t, b, "u"); st != (BudgetStatus{Remaining: 100}) {
		t.Fatalf("after the window: %+v", st)
	}
	if r.mr.Exists("floodgate:{u:u}:b:llm") {
		t.Fatal("the key outlived its window")
	}
}

// A denial writes nothing, not even the removal of aged-out entries.
func TestBudgetDenialWritesNothing(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(100, time.Minute), BudgetSettings{})
	key := "floodgate:{u:d}:b:llm"
	mustReserve(t, b, "d", 30)
	r.advance(30 * time.Second)
	mustReserve(t, b, "d", 70)
	r.advance(40 * time.Second) // the 30 aged out, the 70 not
	before := snapshot(t, r, key)
	if d := mustReserve(t, b, "d", 31); d.Allowed || d.RetryAfter != 20*time.Second {
		t.Fatalf("31 with 70 live: %+v", d)
	}
	if after := snapshot(t, r, key); after != before {
		t.Fatalf("a denial wrote:\n%s\n%s", before, after)
	}
}

// A reservation never settled counts as its estimate once its lease ends,
// for the rest of the window; Settle and Cancel then fail and change
// nothing.
func TestBudgetUnsettledReservationExpires(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(1000, time.Hour), BudgetSettings{Lease: 30 * time.Second})
	ctx := context.Background()
	d := mustReserve(t, b, "crash", 600)
	r.advance(29 * time.Second)
	if st := mustPeekBudget(t, b, "crash"); st.Reserved != 600 || st.Reservations != 1 || st.Spent != 0 {
		t.Fatalf("within the lease: %+v", st)
	}
	r.advance(time.Second)
	if st := mustPeekBudget(t, b, "crash"); st.Reserved != 0 || st.Spent != 600 || st.Remaining != 400 {
		t.Fatalf("after the lease: %+v", st)
	}
	key := "floodgate:{u:crash}:b:llm"
	before := snapshot(t, r, key)
	for _, err := range []error{b.Settle(ctx, "crash", d.Token, 10), b.Cancel(ctx, "crash", d.Token)} {
		if !errors.Is(err, ErrStaleReservation) || !strings.Contains(err.Error(), d.Token) || !strings.Contains(err.Error(), "lease") {
			t.Fatalf("after the lease: %v, want ErrStaleReservation naming the token and the lease", err)
		}
	}
	if after := snapshot(t, r, key); after != before {
		t.Fatalf("a late settle wrote:\n%s\n%s", before, after)
	}
	if d := mustReserve(t, b, "crash", 401); d.Allowed {
		t.Fatalf("the expired estimate stopped counting: %+v", d)
	}
	r.at(time.Hour)
	if d := mustReserve(t, b, "crash", 1000); !d.Allowed {
		t.Fatalf("after the window: %+v", d)
	}
}

// Settle and Cancel with a token that names no live reservation of this
// user in this budget fail, naming it, and change nothing.
func TestBudgetStaleAndForeignTokens(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(1000, time.Hour), BudgetSettings{})
	other, err := b.l.Budget("images", BudgetSettings{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	settled := mustReserve(t, b, "ann", 100)
	mustSettle(t, b, "ann", settled.Token, 50)
	cancelled := mustReserve(t, b, "ann", 100)
	if err := b.Cancel(ctx, "ann", cancelled.Token); err != nil {
		t.Fatal(err)
	}
	live := mustReserve(t, b, "ann", 200)
	bobs := mustReserve(t, b, "bob", 200)
	imgs, _ := other.Reserve(ctx, "ann", 200)
	keys := []string{"floodgate:{u:ann}:b:llm", "floodgate:{u:bob}:b:llm", "floodgate:{u:ann}:b:images"}
	var before []string
	for _, k := range keys {
		before = append(before, snapshot(t, r, k))
	}
	for _, tc := range []struct{ name, user, token string }{
		{"settled twice", "ann", settled.Token},
		{"cancelled, then settled", "ann", cancelled.Token},
		{"another user's", "ann", bobs.Token},
		{"someone else's, from its owner's id", "bob", live.Token},
		{"another budget's", "ann", imgs.Token},
		{"forged nonce", "ann", forgeLastHex(live.Token)},
	} {
		for op, err := range map[string]error{
			"settle": b.Settle(ctx, tc.user, tc.token, 10),
			"cancel": b.Cancel(ctx, tc.user, tc.token),
		} {
			if !errors.Is(err, ErrStaleReservation) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.token)) {
				t.Errorf("%s of %s: %v, want ErrStaleReservation naming the token", op, tc.name, err)
			}
		}
	}
	for _, bad := range []string{"", "x", "1.2", "128.5.0123456789abcdef", "1.0.0123456789abcdef", "01.5.0123456789abcdef", "1.5.0123456789ABCDEF", "l123"} {
		if err := b.Settle(ctx, "ann", bad, 1); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("Settle with %q: %v, want ErrInvalidArgument naming it", bad, err)
		}
	}
	for i, k := range keys {
		if after := snapshot(t, r, k); after != before[i] {
			t.Errorf("%s changed:\n%s\n%s", k, before[i], after)
		}
	}
	if st := mustPeekBudget(t, b, "ann"); st.Spent != 50 || st.Reserved != 200 {
		t.Fatalf("ann: %+v, want 50 spent and 200 reserved", st)
	}
}

// A call that costs more than its estimate is recorded in full, past the
// limit, and delays the next reservation; never an error.
func TestBudgetOvershoot(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(1000, time.Hour), BudgetSettings{})
	d := mustReserve(t, b, "o", 800)
	r.advance(10 * time.Second)
	mustSettle(t, b, "o", d.Token, 1300)
	if st := mustPeekBudget(t, b, "o"); st.Spent != 1300 || st.Remaining != 0 {
		t.Fatalf("after an overshoot: %+v", st)
	}
	d = mustReserve(t, b, "o", 1)
	if d.Allowed || d.Remaining != 0 || d.RetryAfter != time.Hour-10*time.Second {
		t.Fatalf("after an overshoot: %+v, want denied until the 1,300 ages out", d)
	}
	// Lower than the estimate frees the difference at once.
	r.at(2 * time.Hour)
	d = mustReserve(t, b, "o", 1000)
	mustSettle(t, b, "o", d.Token, 10)
	if d := mustReserve(t, b, "o", 990); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after settling 1,000 at 10: %+v", d)
	}
	// Settling at 0 drops the entry, as Cancel does.
	r.at(4 * time.Hour)
	d = mustReserve(t, b, "o", 1000)
	mustSettle(t, b, "o", d.Token, 0)
	if st := mustPeekBudget(t, b, "o"); st.Spent != 0 || st.Remaining != 1000 {
		t.Fatalf("after settling at 0: %+v", st)
	}
}

// Sequential calls never leave more than Limit plus the last call's
// overshoot in the window; with actual == estimate, never more than Limit.
func TestBudgetSequentialOvershootBound(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(5000, time.Minute), BudgetSettings{})
	for i := 0; i < 400; i++ {
		r.advance(time.Second)
		est := 100 + (i*37)%400
		d := mustReserve(t, b, "s", est)
		if !d.Allowed {
			continue
		}
		actual := est
		if i%3 == 0 {
			actual = est + (i*53)%300
		}
		mustSettle(t, b, "s", d.Token, actual)
		if st := mustPeekBudget(t, b, "s"); st.Spent > 5000+actual-est {
			t.Fatalf("call %d: %d spent, more than the limit plus the last overshoot (%d)", i, st.Spent, actual-est)
		}
	}
}

func TestBudgetBadInput(t *testing.T) {
	l, _ := newTestLimiter(t, budgetConfig(1000, time.Hour))
	ctx := context.Background()
	b, err := l.Budget("llm", BudgetSettings{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1, 1001, MaxBudgetUnits + 1} {
		if _, err := b.Reserve(ctx, "u", n); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "estimate") {
			t.Errorf("Reserve(%d): %v", n, err)
		}
		if _, err := b.Charge(ctx, "u", n); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "charge") {
			t.Errorf("Charge(%d): %v", n, err)
		}
	}
	d := mustReserve(t, b, "u", 10)
	for _, n := range []int{-1, MaxBudgetUnits + 1} {
		if err := b.Settle(ctx, "u", d.Token, n); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "actual") {
			t.Errorf("Settle(%d): %v", n, err)
		}
	}
	if st := mustPeekBudget(t, b, "u"); st.Reserved != 10 {
		t.Fatalf("bad input changed the reservation: %+v", st)
	}
	for _, u := range []string{"", strings.Repeat("x", MaxUserLen+1)} {
		if _, err := b.Reserve(ctx, u, 1); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("Reserve for user %q: %v", u, err)
		}
	}
	for _, tc := range []struct {
		name string
		s    BudgetSettings
		want string
	}{
		{"llm", BudgetSettings{Limit: MaxBudgetUnits + 1}, "Limit"},
		{"llm", BudgetSettings{Limit: -5}, "Limit"},
		{"llm", BudgetSettings{Window: 2 * time.Hour}, "MaxIdleTime"},
		{"llm", BudgetSettings{Window: -time.Second}, "Window"},
		{"llm", BudgetSettings{Window: time.Minute, Lease: 2 * time.Minute}, "Lease"},
		{"", BudgetSettings{}, "empty"},
	} {
		if _, err := l.Budget(tc.name, tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Budget(%q, %+v): %v, want an error naming %s", tc.name, tc.s, err, tc.want)
		}
	}
	off, _ := newTestLimiter(t, DefaultConfig())
	if _, err := off.Budget("llm", BudgetSettings{}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "FLOODGATE_USER_TOKEN_BUDGET") {
		t.Errorf("Budget with no Limit and the budget off: %v", err)
	}
	// A short window takes a lease no longer than itself.
	short, err := l.Budget("short", BudgetSettings{Window: 10 * time.Second})
	if err != nil || short.Lease() != 10*time.Second {
		t.Fatalf("a 10s window: lease %v, %v", short.Lease(), err)
	}
	var nilBudget *Budget
	if _, err := nilBudget.Reserve(ctx, "u", 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("nil Budget: %v", err)
	}
}

func TestBudgetConfig(t *testing.T) {
	cfg, err := configFromEnv(map[string]string{"FLOODGATE_USER_TOKEN_BUDGET": "20000", "FLOODGATE_USER_TOKEN_WINDOW": "30m", "FLOODGATE_BUDGET_ON_REDIS_ERROR": "closed"})
	if err != nil || cfg.UserTokenBudget != 20000 || cfg.UserTokenWindow != 30*time.Minute || cfg.BudgetOnRedisError != FailClosed {
		t.Fatalf("from the environment: %+v, %v", cfg, err)
	}
	if d := DefaultConfig(); d.UserTokenBudget != 0 || d.UserTokenWindow != time.Hour {
		t.Fatalf("defaults: budget %d, window %v; want off and 1h", d.UserTokenBudget, d.UserTokenWindow)
	}
	for env, want := range map[string]string{
		"FLOODGATE_USER_TOKEN_BUDGET=-1":                                "FLOODGATE_USER_TOKEN_BUDGET",
		"FLOODGATE_USER_TOKEN_BUDGET=3000000000":                        "FLOODGATE_USER_TOKEN_BUDGET",
		"FLOODGATE_USER_TOKEN_BUDGET=5,FLOODGATE_USER_TOKEN_WINDOW=2h":  "FLOODGATE_USER_TOKEN_WINDOW",
		"FLOODGATE_USER_TOKEN_BUDGET=5,FLOODGATE_USER_TOKEN_WINDOW=0":   "FLOODGATE_USER_TOKEN_WINDOW",
		"FLOODGATE_BUDGET_ON_REDIS_ERROR=sometimes":                     "FLOODGATE_BUDGET_ON_REDIS_ERROR",
		"FLOODGATE_USER_TOKEN_BUDGET=5,FLOODGATE_USER_TOKEN_WINDOW=abc": "FLOODGATE_USER_TOKEN_WINDOW",
	} {
		m := map[string]string{}
		for _, kv := range strings.Split(env, ",") {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		if _, err := configFromEnv(m); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", env, err, want)
		}
	}
}

func TestBudgetForeignKey(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(1000, time.Hour), BudgetSettings{})
	ctx := context.Background()
	r.mr.Set("floodgate:{u:s}:b:llm", "session")
	r.mr.ZAdd("floodgate:{u:z}:b:llm", 5, "someone-else")
	r.mr.ZAdd("floodgate:{u:z}:b:llm", float64(epoch.UnixMilli()-1234), "b")
	for _, u := range []string{"s", "z"} {
		if _, err := b.Reserve(ctx, u, 1); !errors.Is(err, ErrForeignKey) {
			t.Errorf("Reserve over %s: %v", u, err)
		}
		if _, err := b.Peek(ctx, u); !errors.Is(err, ErrForeignKey) {
			t.Errorf("Peek over %s: %v", u, err)
		}
		if err := b.Settle(ctx, u, "1.5.0123456789abcdef", 1); !errors.Is(err, ErrForeignKey) && !errors.Is(err, ErrStaleReservation) {
			t.Errorf("Settle over %s: %v", u, err)
		}
	}
	if got, _ := r.mr.Get("floodgate:{u:s}:b:llm"); got != "session" {
		t.Fatalf("the foreign key was changed: %q", got)
	}
}

// Past 127 entries the two oldest spends merge into one at the later
// one's time: the set stays a listpack-sized 128 members, the sum is
// exact, and the merged units count until the later time ages out.
func TestBudgetMergesPast127Entries(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(10_000, time.Hour), BudgetSettings{})
	ctx := context.Background()
	key := "floodgate:{u:m}:b:llm"
	for i := 0; i < 200; i++ {
		r.advance(time.Second)
		if d, err := b.Charge(ctx, "m", 1+i%5); err != nil || !d.Allowed {
			t.Fatalf("charge %d: %+v, %v", i, d, err)
		}
		if n := zcard(t, r, key); (i < 127 && n != i+2) || n > 128 { // entries + the base
			t.Fatalf("charge %d: %d members", i, n)
		}
	}
	want := 0
	for i := 0; i < 200; i++ {
		want += 1 + i%5
	}
	if st := mustPeekBudget(t, b, "m"); st.Spent != want {
		t.Fatalf("spent %d after merges, want %d", st.Spent, want)
	}
	// The oldest entry now holds charges 0..73 (74 merges, 1 s apart): it
	// ages out when charge 73 does, at 74 s + 1 h; the ones merged into it
	// counted longer than their own time, never shorter.
	r.at(time.Hour + 73*time.Second)
	if st := mustPeekBudget(t, b, "m"); st.Spent != want {
		t.Fatalf("at 1h73s: spent %d, want all %d still counted", st.Spent, want)
	}
	r.at(time.Hour + 74*time.Second)
	merged := 0
	for i := 0; i < 74; i++ {
		merged += 1 + i%5
	}
	if st := mustPeekBudget(t, b, "m"); st.Spent != want-merged {
		t.Fatalf("at 1h74s: spent %d, want %d", st.Spent, want-merged)
	}
	// Live reservations never merge: 127 of them fill the set and the next
	// waits until two leases have ended, so two entries can merge.
	r.at(3 * time.Hour)
	for i := 0; i < 127; i++ {
		r.advance(time.Millisecond)
		mustReserve(t, b, "full", 1)
	}
	d := mustReserve(t, b, "full", 1)
	if d.Allowed || d.RetryAfter != b.Lease()-125*time.Millisecond {
		t.Fatalf("128th live reservation: %+v, want denied until the second lease ends", d)
	}
	r.advance(d.RetryAfter)
	if d := mustReserve(t, b, "full", 1); !d.Allowed {
		t.Fatalf("after the oldest lease: %+v", d)
	}
	if n := zcard(t, r, "floodgate:{u:full}:b:llm"); n != 128 {
		t.Fatalf("%d members, want 128", n)
	}
	// One settled spend beside 126 in flight fills the set as well: the
	// next is denied until the first lease ends (the spend can merge
	// with what that reservation leaves, nothing sooner).
	r.at(6 * time.Hour)
	if d, err := b.Charge(ctx, "mixed", 1); err != nil || !d.Allowed {
		t.Fatalf("spend: %+v, %v", d, err)
	}
	for i := 0; i < 126; i++ {
		r.advance(time.Millisecond)
		mustReserve(t, b, "mixed", 1)
	}
	d = mustReserve(t, b, "mixed", 1)
	if d.Allowed || d.RetryAfter != b.Lease()-125*time.Millisecond {
		t.Fatalf("1 spend + 126 in flight, next: %+v, want denied until the first lease ends", d)
	}
	r.advance(d.RetryAfter)
	if d := mustReserve(t, b, "mixed", 1); !d.Allowed {
		t.Fatalf("after the first lease: %+v", d)
	}
}

// A user active for hours keeps small relative scores (rebased), and the
// accounting stays exact across the rebase.
func TestBudgetRebase(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(100, time.Minute), BudgetSettings{})
	ctx := context.Background()
	key := "floodgate:{u:r}:b:llm"
	for i := 0; i < 600; i++ { // 5 h, one charge every 30 s
		r.advance(30 * time.Second)
		if d, err := b.Charge(ctx, "r", 10); err != nil || !d.Allowed || d.Remaining != 80 && i > 0 {
			t.Fatalf("charge %d: %+v, %v", i, d, err)
		}
	}
	z, _ := r.rdb.ZRangeWithScores(ctx, key, 0, -2).Result()
	for _, e := range z {
		if e.Score < 0 || e.Score > 8388607+2*60_000 {
			t.Fatalf("relative score %v after 5 h", e.Score)
		}
	}
	if st := mustPeekBudget(t, b, "r"); st.Spent != 20 {
		t.Fatalf("spent %d, want the last two charges", st.Spent)
	}
}

// A rebase records the new entry at TIME rounded up, as every other
// admission does, so that it ages out late, never early: a charge made
// within a millisecond is recorded at its end.
func TestBudgetRebaseRecordsRoundedUp(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(100, time.Minute), BudgetSettings{})
	ctx := context.Background()
	key := "floodgate:{u:s}:b:llm"
	rebased, base := false, 0.0
	for i := 0; i < 300; i++ { // 2.5 h: past the rebase at 2^23 ms
		r.advance(30*time.Second + 500*time.Microsecond)
		if d, err := b.Charge(ctx, "s", 10); err != nil || !d.Allowed {
			t.Fatalf("charge %d: %+v, %v", i, d, err)
		}
		z, err := r.rdb.ZRangeWithScores(ctx, key, -2, -1).Result()
		if err != nil || len(z) != 2 || z[1].Member != "b" {
			t.Fatalf("charge %d: %v, %v", i, z, err)
		}
		// Entries stay live throughout: only a rebase moves the base.
		rebased = rebased || i > 0 && z[1].Score != base
		base = z[1].Score
		if at, want := int64(z[1].Score+z[0].Score), (r.now.UnixMicro()+999)/1000; at != want {
			t.Fatalf("charge %d recorded at %d, want %d (TIME rounded up)", i, at, want)
		}
	}
	if !rebased {
		t.Fatal("no rebase in 2.5 h")
	}
}

// After Redis TIME steps back the key's clock stays at its newest entry:
// waits stretch by the step, but none outlasts the key's TTL.
func TestBudgetClockStepsBack(t *testing.T) {
	b, r := newTestBudget(t, budgetConfig(100, time.Minute), BudgetSettings{Lease: 30 * time.Second})
	ctx := context.Background()
	key := "floodgate:{u:c}:b:llm"
	r.at(time.Minute)
	d := mustReserve(t, b, "c", 60)
	r.mr.SetTime(epoch.Add(30 * time.Second)) // TIME steps back 30 s; the TTL does not
	// The reservation is judged on the key's clock: still live.
	st := mustPeekBudget(t, b, "c")
	if st.Reserved != 60 || st.ResetAfter != time.Minute {
		t.Fatalf("after the step back: %+v", st)
	}
	d2, _ := b.Charge(ctx, "c", 50)
	if d2.Allowed || d2.RetryAfter != time.Minute || d2.ResetAfter != time.Minute {
		t.Fatalf("denial after the step back: %+v, want a wait of the TTL (1m)", d2)
	}
	if d3, _ := b.Charge(ctx, "c", 40); !d3.Allowed || d3.ResetAfter != 90*time.Second {
		t.Fatalf("allowed after the step back: %+v, want ResetAfter stretched to 90s", d3)
	}
	if ttl := r.mr.TTL(key); ttl != 90*time.Second {
		t.Fatalf("TTL %v, want 90s", ttl)
	}
	mustSettle(t, b, "c", d.Token, 60)
	// Once the key is gone, as the wait said, the user starts afresh.
	r.now = epoch.Add(30 * time.Second)
	r.advance(90 * time.Second)
	if d := mustReserve(t, b, "c", 100); !d.Allowed {
		t.Fatalf("after the TTL: %+v", d)
	}
}

// downBudget is Budget "llm" (1000 units an hour) of a downLimiter whose
// BudgetOnRedisError is mode.
func downBudget(t *testing.T, mode FailureMode) *Budget {
	t.Helper()
	cfg := budgetConfig(1000, time.Hour)
	cfg.BudgetOnRedisError = mode
	b, err := downLimiter(t, cfg).Budget("llm", BudgetSettings{})
	return must(t, b, err, "Budget")
}

func TestBudgetRedisDown(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []FailureMode{FailLocal, FailOpen, FailClosed} {
		t.Run(mode.String(), func(t *testing.T) {
			b := downBudget(t, mode)
			d, err := b.Reserve(ctx, "u", 600)
			if err != nil || !d.Degraded {
				t.Fatalf("Reserve: %+v, %v", d, err)
			}
			switch mode {
			case FailOpen:
				if !d.Allowed || d.Remaining != Unlimited || d.Token != openToken {
					t.Fatalf("FailOpen: %+v", d)
				}
				if err := b.Settle(ctx, "u", d.Token, 5000); err != nil {
					t.Fatalf("settling an open reservation: %v", err)
				}
			case FailClosed:
				if d.Allowed || d.Reason != ReasonRedisDown || d.Token != "" {
					t.Fatalf("FailClosed: %+v", d)
				}
			case FailLocal:
				if !d.Allowed || d.Remaining != 400 || !isLocalToken(d.Token) {
					t.Fatalf("FailLocal: %+v", d)
				}
				if d2, _ := b.Reserve(ctx, "u", 401); d2.Allowed || d2.Reason != ReasonBudget || !d2.Degraded {
					t.Fatalf("FailLocal over the limit: %+v", d2)
				}
				mustSettle(t, b, "u", d.Token, 100)
				if err := b.Settle(ctx, "u", d.Token, 100); !errors.Is(err, ErrStaleReservation) {
					t.Fatalf("settling a local token twice: %v", err)
				}
				if d2, _ := b.Reserve(ctx, "u", 900); !d2.Allowed || d2.Remaining != 0 {
					t.Fatalf("FailLocal after settling at 100: %+v", d2)
				}
				if d2, _ := b.Charge(ctx, "other", 1000); !d2.Allowed || d2.Token != "" {
					t.Fatalf("FailLocal charge: %+v", d2)
				}
			}
			// A Redis reservation cannot be settled while Redis is out of
			// reach: an error IsUnavailable recognises.
			if err := b.Settle(ctx, "u", "3.100.0123456789abcdef", 50); err == nil || !IsUnavailable(err) {
				t.Fatalf("Settle while Redis is down: %v", err)
			}
			if _, err := b.Peek(ctx, "u"); err == nil || !IsUnavailable(err) {
				t.Fatalf("Peek while Redis is down: %v", err)
			}
		})
	}
}

// The local fallback applies the same window, with the same reservation
// lease, on this process's clock.
func TestBudgetLocalFallback(t *testing.T) {
	lb := &localBudget{users: map[string][]localSpend{}}
	t0 := epoch
	const limit, window, lease = 100, time.Minute, 10 * time.Second
	if d := lb.admit(t0, "u", 60, "0123456789abcdef", limit, window, lease); !d.Allowed || d.Token != "l0123456789abcdef" {
		t.Fatalf("first: %+v", d)
	}
	if d := lb.admit(t0.Add(time.Second), "u", 50, "", limit, window, lease); d.Allowed || d.RetryAfter != 59*time.Second {
		t.Fatalf("over the limit: %+v", d)
	}
	if s := lb.settle(t0.Add(lease), "u", "0123456789abcdef", 1, lease); s != -2 {
		t.Fatalf("settle after the lease: %d", s)
	}
	if d := lb.admit(t0.Add(window), "u", 100, "", limit, window, lease); !d.Allowed {
		t.Fatalf("after the window: %+v", d)
	}
	for i := 0; i < 300; i++ {
		lb.admit(t0.Add(2*window+time.Duration(i)*time.Millisecond), "m", 1, "", 1000, window, lease)
	}
	if n := len(lb.users["m"]); n != maxBudgetEntries {
		t.Fatalf("%d local entries, want them merged down to %d", n, maxBudgetEntries)
	}
	sum := 0
	for _, e := range lb.users["m"] {
		sum += e.units
	}
	if sum != 300 {
		t.Fatalf("local entries sum to %d after merging, want 300", sum)
	}
	// Live reservations never merge (budget_reserve.lua's rule): with 127
	// of them the next waits until two leases have ended; with one spend
	// among them, until one has.
	t1 := t0.Add(time.Hour)
	for _, tc := range []struct {
		user  string
		spend bool // the first entry is a spend
	}{{"full", false}, {"half", true}} {
		for i := 0; i < maxBudgetEntries; i++ {
			nonce := fmt.Sprintf("%016x", i)
			if tc.spend && i == 0 {
				nonce = ""
			}
			if d := lb.admit(t1.Add(time.Duration(i)*time.Millisecond), tc.user, 1, nonce, 1000, window, lease); !d.Allowed {
				t.Fatalf("%s: entry %d: %+v", tc.user, i, d)
			}
		}
		// The second entry's lease ends first among those that must.
		d := lb.admit(t1.Add(126*time.Millisecond), tc.user, 1, "ffffffffffffffff", 1000, window, lease)
		if d.Allowed || d.RetryAfter != lease-125*time.Millisecond {
			t.Fatalf("%s: 128th entry: %+v, want denied for %v", tc.user, d, lease-125*time.Millisecond)
		}
	}
}

// The Observer sees each decision under PolicyBudget.
func TestBudgetObserved(t *testing.T) {
	obs := &recordObserver{}
	cfg := budgetConfig(10, time.Hour)
	cfg.Observer = obs
	b, _ := newTestBudget(t, cfg, BudgetSettings{})
	mustReserve(t, b, "o", 10)
	mustReserve(t, b, "o", 1)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.decisions) != 2 || !obs.decisions[0].Allowed || obs.decisions[1].Reason != ReasonBudget {
		t.Fatalf("observed %+v", obs.decisions)
	}
	if ReasonBudget.String() != "budget" {
		t.Fatalf("ReasonBudget is %q", ReasonBudget.String())
	}
}

func TestBudgetUserKey(t *testing.T) {
	b, _ := newTestBudget(t, budgetConfig(10, time.Hour), BudgetSettings{})
	k, err := b.UserKey("ann")
	if err != nil || k != "floodgate:{u:ann}:b:llm" {
		t.Fatalf("UserKey = %q, %v", k, err)
	}
	uk, _ := b.l.UserKeys("ann")
	if !reflect.DeepEqual(hashTag(k), hashTag(uk[0])) {
		t.Fatalf("budget key %q and window key %q have different hash tags", k, uk[0])
	}
	k, _ = b.UserKey("a}b")
	if !strings.HasPrefix(k, "floodgate:{u:#") {
		t.Fatalf("an id with braces keeps its tag: %q", k)
	}
}

func zcard(t *testing.T, r *testRedis, key string) int {
	t.Helper()
	n, err := r.rdb.ZCard(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// forgeLastHex changes token's last hex digit (a fixed "0" matched the
// real token one time in 16).
func forgeLastHex(token string) string {
	last := "0"
	if token[len(token)-1] == '0' {
		last = "1"
	}
	return token[:len(token)-1] + last
}
