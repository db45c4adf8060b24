package limiter

import (
	"context"
	"testing"
	"time"
)

// The worked numbers in Decision's doc, for a user and for a probe.
func TestDecisionDocNumbers(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 20, time.Hour))
	if d := mustAllow(t, l, "viewer"); d != (Decision{Allowed: true, Remaining: 19, ResetAfter: time.Hour}) {
		t.Fatalf("first message: %+v", d)
	}
	r.advance(4 * time.Second)
	want := Decision{Reason: ReasonCooldown, Remaining: 19, RetryAfter: 6 * time.Second, ResetAfter: 59*time.Minute + 56*time.Second}
	if d := mustAllow(t, l, "viewer"); d != want {
		t.Fatalf("second message: %+v, want %+v", d, want)
	}

	// A 5 s delay and a 30 s lease (the defaults); the endpoint fails at
	// 12:00:04 here, so the probe comes at 12:00:09.
	b := mustBackoff(t, l, "llm")
	b.token = func() string { return "9f86d081884c7d65" }
	ctx := context.Background()
	if _, err := b.Failure(ctx, "ep"); err != nil {
		t.Fatal(err)
	}
	r.advance(5 * time.Second)
	d, err := b.Check(ctx, "ep")
	if err != nil || d != (Decision{Allowed: true, Probe: true, Token: "9f86d081884c7d65", ResetAfter: 30 * time.Second}) {
		t.Fatalf("probe: %+v, %v", d, err)
	}
	r.advance(time.Second)
	d, err = b.Check(ctx, "ep")
	if err != nil || d != (Decision{Reason: ReasonProbing, RetryAfter: 29 * time.Second, ResetAfter: 29 * time.Second}) {
		t.Fatalf("while probing: %+v, %v", d, err)
	}
}

// newToken's tokens are what isToken accepts (Abandon and Settle check
// tokens with it), and differ from draw to draw.
func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok := newToken()
		if !isToken(tok) {
			t.Fatalf("newToken() = %q, not 16 lower-case hex digits", tok)
		}
		seen[tok] = true
	}
	if len(seen) < 999 {
		t.Fatalf("1000 draws gave %d distinct tokens", len(seen))
	}
	for _, bad := range []string{"", "9f86d081884c7d6", "9f86d081884c7d655", "9F86D081884C7D65", "9f86d081884c7d6g"} {
		if isToken(bad) {
			t.Errorf("isToken(%q) = true", bad)
		}
	}
}
