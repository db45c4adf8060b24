package limiter

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func mustPeek(t *testing.T, l *Limiter, user string) UserStatus {
	t.Helper()
	s, err := l.Peek(context.Background(), user)
	if err != nil {
		t.Fatalf("Peek(%q): %v", user, err)
	}
	return s
}

// The worked example of UserStatus's doc.
func TestPeekDocExample(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 20, time.Hour))
	if got, want := mustPeek(t, l, "alice"), (UserStatus{Remaining: 20}); got != want {
		t.Fatalf("fresh user: %+v, want %+v", got, want)
	}
	mustAllow(t, l, "alice")
	r.advance(4 * time.Second)
	want := UserStatus{Reason: ReasonCooldown, Remaining: 19, RetryAfter: 6 * time.Second,
		CooldownLeft: 6 * time.Second, Entries: 1, ResetAfter: time.Hour - 4*time.Second}
	if got := mustPeek(t, l, "alice"); got != want {
		t.Fatalf("4s after a message: %+v, want %+v", got, want)
	}
}

// Peek writes nothing: the keys, their contents and their TTLs are the
// same after any number of peeks, and the next Allow is unaffected.
func TestPeekCountsNothing(t *testing.T) {
	for _, limit := range []int{0, 3} {
		l, r := newTestLimiter(t, userConfig(10*time.Second, limit, time.Minute))
		mustAllow(t, l, "bob")
		r.advance(time.Second)
		before := r.mr.Dump()
		ttl := r.mr.TTL(l.userKey("bob"))
		for range 50 {
			mustPeek(t, l, "bob")
			mustPeek(t, l, "nobody")
		}
		if after := r.mr.Dump(); after != before {
			t.Fatalf("limit %d: peeking changed Redis:\n%s\nwas\n%s", limit, after, before)
		}
		if got := r.mr.TTL(l.userKey("bob")); got != ttl {
			t.Fatalf("limit %d: TTL %v after peeks, was %v", limit, got, ttl)
		}
		if r.mr.Exists(l.userKey("nobody")) {
			t.Fatalf("limit %d: peeking an unknown user created a key", limit)
		}
	}
}

// Peek predicts Allow: over random traffic, a peek followed by Allow at the
// same instant agrees on allowed, reason, remaining and both waits, also
// when Redis TIME steps back (user_allow.lua's skew rule) and when the
// cooldown was shortened while keys written under the longer one live on.
func TestPeekPredictsAllow(t *testing.T) {
	for _, tc := range []struct {
		cooldown, before time.Duration // before: the cooldown that wrote the keys first
		limit            int
	}{
		{10 * time.Second, 0, 5}, {0, 0, 5}, {10 * time.Second, 0, 0}, {time.Second, 0, 1},
		{2 * time.Second, 30 * time.Second, 0}, {2 * time.Second, 30 * time.Second, 3},
	} {
		l, r := newTestLimiter(t, userConfig(tc.cooldown, tc.limit, time.Minute))
		if tc.before > 0 {
			old, err := New(r.rdb, userConfig(tc.before, tc.limit, time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			mustAllow(t, old, "carol")
		}
		rng := rand.New(rand.NewPCG(1, uint64(tc.limit)))
		steps := 400
		if testing.Short() {
			steps = 100 // the same traffic, cut short
		}
		for i := range steps {
			if rng.IntN(10) == 0 {
				r.stepBack(time.Duration(rng.IntN(20000)) * time.Millisecond)
			} else {
				r.advance(time.Duration(rng.IntN(8000)) * time.Millisecond)
			}
			s := mustPeek(t, l, "carol")
			d := mustAllow(t, l, "carol")
			if d.Allowed != (s.RetryAfter == 0) || (!d.Allowed && (d.Reason != s.Reason || d.RetryAfter != s.RetryAfter || d.ResetAfter != s.ResetAfter)) {
				t.Fatalf("%+v step %d: peek %+v, then Allow %+v", tc, i, s, d)
			}
			want := s.Remaining
			if d.Allowed && want > 0 {
				want--
			}
			if d.Remaining != want {
				t.Fatalf("%+v step %d: peek remaining %d, Allow %+v", tc, i, s.Remaining, d)
			}
			if tc.limit > 0 && s.Entries != tc.limit-s.Remaining {
				t.Fatalf("%+v step %d: entries %d with remaining %d of %d", tc, i, s.Entries, s.Remaining, tc.limit)
			}
		}
	}
}

func TestPeekWindowFull(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 2, time.Minute))
	mustAllow(t, l, "dan")
	r.advance(10 * time.Second)
	mustAllow(t, l, "dan")
	r.advance(5 * time.Second)
	want := UserStatus{Reason: ReasonWindow, Remaining: 0, RetryAfter: 45 * time.Second,
		Entries: 2, ResetAfter: 55 * time.Second}
	if got := mustPeek(t, l, "dan"); got != want {
		t.Fatalf("full window: %+v, want %+v", got, want)
	}
	r.advance(46 * time.Second)
	want = UserStatus{Remaining: 1, Entries: 1, ResetAfter: 9 * time.Second}
	if got := mustPeek(t, l, "dan"); got != want {
		t.Fatalf("one aged out: %+v, want %+v", got, want)
	}
}

func TestPeekCooldownOnly(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 0, time.Minute))
	if got, want := mustPeek(t, l, "erin"), (UserStatus{Remaining: Unlimited}); got != want {
		t.Fatalf("fresh: %+v, want %+v", got, want)
	}
	mustAllow(t, l, "erin")
	r.advance(3 * time.Second)
	want := UserStatus{Reason: ReasonCooldown, Remaining: Unlimited, RetryAfter: 7 * time.Second,
		CooldownLeft: 7 * time.Second, ResetAfter: 7 * time.Second}
	if got := mustPeek(t, l, "erin"); got != want {
		t.Fatalf("in cooldown: %+v, want %+v", got, want)
	}
}

func TestPeekPoliciesOff(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 0, time.Minute))
	r.mr.Close() // no Redis needed
	if got, want := mustPeek(t, l, "x"), (UserStatus{Remaining: Unlimited}); got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
}

func TestPeekErrors(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 5, time.Minute))
	ctx := context.Background()
	for _, u := range []string{"", string(make([]byte, MaxUserLen+1))} {
		if _, err := l.Peek(ctx, u); !errors.Is(err, ErrInvalidUser) {
			t.Fatalf("Peek(%d bytes) = %v, want ErrInvalidUser", len(u), err)
		}
	}
	if err := r.mr.Set(l.userKey("mallory"), "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Peek(ctx, "mallory"); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("foreign string key: %v, want ErrForeignKey", err)
	}
	r.mr.ZAdd(l.userKey("trudy"), 1, "x")
	if _, err := l.Peek(ctx, "trudy"); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("foreign zset: %v, want ErrForeignKey", err)
	}
	var nilL *Limiter
	if _, err := nilL.Peek(ctx, "a"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil Limiter: %v", err)
	}
	r.mr.Close()
	if _, err := l.Peek(ctx, "alice"); err == nil || !IsUnavailable(err) {
		t.Fatalf("Redis down: %v, want an unavailable error", err)
	}
}

func TestPeekForeignCooldownKey(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 0, time.Minute))
	r.mr.HSet(l.userKey("oscar"), "f", "v")
	if _, err := l.Peek(context.Background(), "oscar"); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("foreign hash: %v, want ErrForeignKey", err)
	}
}
