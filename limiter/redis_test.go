package limiter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestEveryUserCallOnTheCallPath: Allow, Reset and Import each report their
// round trip to the Observer, skip Redis while it is marked down, and wrap
// a foreign key as ErrForeignKey with the key quoted.
func TestEveryUserCallOnTheCallPath(t *testing.T) {
	obs := &recordObserver{}
	cfg := userConfig(time.Second, 5, time.Hour)
	cfg.Observer = obs
	l, r := newTestLimiter(t, cfg)
	ctx := context.Background()
	mustAllow(t, l, "u")
	if err := l.Reset(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if err := l.Import(ctx, "u", []time.Time{time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(obs.ops, ","); got != "user_allow,user_reset,user_import" {
		t.Fatalf("observed %q", got)
	}

	r.mr.Set("floodgate:{u:w}:w", "not a window")
	err := l.call(ctx, "probe", "floodgate:{u:w}:w", func(ctx context.Context) error {
		return l.rdb.ZCard(ctx, "floodgate:{u:w}:w").Err()
	})
	if !errors.Is(err, ErrForeignKey) || !strings.Contains(err.Error(), `"floodgate:{u:w}:w"`) {
		t.Fatalf("WRONGTYPE through call: %v; want ErrForeignKey naming the key quoted", err)
	}

	l.health.downUntil.Store(time.Now().Add(time.Hour).UnixNano())
	before := r.mr.CommandCount()
	for name, f := range map[string]func() error{
		"Reset":  func() error { return l.Reset(ctx, "u") },
		"Import": func() error { return l.Import(ctx, "u", nil) },
	} {
		if err := f(); !errors.Is(err, ErrRedisUnavailable) {
			t.Errorf("%s while Redis is marked down: %v, want ErrRedisUnavailable at once", name, err)
		}
	}
	if d := mustAllow(t, l, "v"); !d.Degraded {
		t.Fatalf("Allow while Redis is marked down: %+v", d)
	}
	if n := r.mr.CommandCount() - before; n != 0 {
		t.Fatalf("%d commands reached a Redis marked down", n)
	}
}

// A script's reply is checked once, on the call path: a reply of the
// wrong length or type is an error naming the script, never read past.
func TestScriptReplyChecked(t *testing.T) {
	fixed, varying := script{name: "fixed", reply: 2}, script{name: "varying"}
	for _, tc := range []struct {
		s    script
		res  any
		want string // error text; "" for none
	}{
		{fixed, []any{int64(1), int64(2)}, ""},
		{fixed, []any{int64(1)}, "limiter: fixed replied 1 values, want 2"},
		{fixed, []any{int64(1), int64(2), int64(3)}, "limiter: fixed replied 3 values, want 2"},
		{fixed, []any{int64(1), "2"}, "limiter: fixed reply[1] is string, want an integer"},
		{fixed, int64(1), "limiter: fixed replied int64, want an array"},
		{varying, []any{int64(1), int64(2), int64(3)}, ""},
	} {
		r, err := tc.s.int64s(tc.res)
		switch {
		case tc.want == "" && (err != nil || len(r) != len(tc.res.([]any))):
			t.Errorf("%s %v: %v, %v", tc.s.name, tc.res, r, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%s %v: error %v, want %q", tc.s.name, tc.res, err, tc.want)
		}
	}
}
