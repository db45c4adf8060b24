package limiter

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAllowManyMatchesAllow(t *testing.T) {
	cfg := userConfig(10*time.Second, 3, time.Hour)
	one, r1 := newTestLimiter(t, cfg)
	many, r2 := newTestLimiter(t, cfg)
	users := []string{"a", "b", "a", "c", "b"}
	for _, at := range []time.Duration{0, 5 * time.Second, 10 * time.Second, 30 * time.Second} {
		r1.at(at)
		r2.at(at)
		got, err := many.AllowMany(context.Background(), users)
		if err != nil {
			t.Fatal(err)
		}
		for i, u := range users {
			if want := mustAllow(t, one, u); got[i] != want {
				t.Fatalf("at %v users[%d]=%q: AllowMany %+v, Allow %+v", at, i, u, got[i], want)
			}
		}
	}
}

func TestAllowManyBadUserSendsNothing(t *testing.T) {
	l, r := newTestLimiter(t, DefaultConfig())
	_, err := l.AllowMany(context.Background(), []string{"ok", "", "fine"})
	if !errors.Is(err, ErrInvalidUser) || err.Error() == "" {
		t.Fatalf("AllowMany with an empty id = %v", err)
	}
	if len(r.mr.Keys()) != 0 {
		t.Fatalf("a rejected batch wrote %q", r.mr.Keys())
	}
}

func TestAllowManyNoScript(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 5, time.Hour))
	if _, err := l.AllowMany(context.Background(), []string{"x", "y"}); err != nil {
		t.Fatal(err)
	}
	r.mr.Restart() // forgets loaded scripts... and keeps data
	r.rdb.ScriptFlush(context.Background())
	d, err := l.AllowMany(context.Background(), []string{"x", "y"})
	if err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v", err)
	}
	if d[0].Remaining != 3 || d[1].Remaining != 3 {
		t.Fatalf("after SCRIPT FLUSH: %+v", d)
	}
}
