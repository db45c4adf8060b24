package limiter

import (
	"context"
	"testing"
	"time"
)

// user_allow_one.lua and user_allow.lua are one decision written once (the
// lib files): the same requests at the same times get the same five
// integers from both, on every path (fresh, allowed, cooldown and window
// denials, aged-out entries, a fresh window, a clock step back, a foreign
// key), with and without a window.
func TestAllowOneDecidesAsAllowMany(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cooldown time.Duration
		limit    int
		window   time.Duration
	}{
		{"cooldown and window", 2 * time.Second, 3, 10 * time.Second},
		{"window of one", 0, 1, 5 * time.Second},
		{"window only", 0, 4, 8 * time.Second},
		{"cooldown only", 3 * time.Second, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, r := newTestLimiter(t, userConfig(tc.cooldown, tc.limit, tc.window))
			ctx := context.Background()
			steps := []time.Duration{0, 0, 500 * time.Millisecond, 1500 * time.Millisecond, 1700 * time.Microsecond,
				2 * time.Second, 2 * time.Second, 3 * time.Second, 9 * time.Second, 11 * time.Second, 40 * time.Second, 1}
			for i, step := range steps {
				if i == len(steps)-2 {
					r.stepBack(1500 * time.Millisecond)
				} else {
					r.advance(step)
				}
				one, err := l.decideOne(ctx, "one")
				if err != nil {
					t.Fatalf("step %d: decideOne: %v", i, err)
				}
				var many [1]userReply
				l.decideRedis(ctx, []string{"many"}, many[:])
				if many[0].err != nil {
					t.Fatalf("step %d: decideRedis: %v", i, many[0].err)
				}
				if one != many[0].r {
					t.Errorf("step %d (+%v): user_allow_one %v, user_allow %v", i, step, one, many[0].r)
				}
			}
			// Another program's key: -1 from both, nothing written.
			for _, u := range []string{"one", "many"} {
				r.mr.Del(l.userKey(u))
				if err := r.mr.Set(l.userKey(u), "theirs"); err != nil {
					t.Fatal(err)
				}
			}
			one, err := l.decideOne(ctx, "one")
			var many [1]userReply
			l.decideRedis(ctx, []string{"many"}, many[:])
			if err != nil || many[0].err != nil || one[0] != -1 || one != many[0].r {
				t.Errorf("foreign key: user_allow_one %v (%v), user_allow %v (%v), want -1 from both", one, err, many[0].r, many[0].err)
			}
		})
	}
}

// A lone Allow after SCRIPT FLUSH loads user_allow_one.lua again (EVAL)
// and decides as before.
func TestAllowOneAfterScriptFlush(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(time.Second, 5, time.Minute))
	if d := mustAllow(t, l, "ann"); !d.Allowed || d.Remaining != 4 {
		t.Fatalf("first: %+v", d)
	}
	if err := r.rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, l, "ann"); d.Allowed || d.Reason != ReasonCooldown {
		t.Fatalf("after SCRIPT FLUSH: %+v, want a cooldown denial", d)
	}
	r.advance(time.Second)
	if d := mustAllow(t, l, "ann"); !d.Allowed || d.Remaining != 3 {
		t.Fatalf("after the cooldown: %+v", d)
	}
}

// bound: a Background call gets a shared context whose deadline is 7/8 to
// 8/8 of RedisTimeout away, the same one within an eighth of it and a new
// one after; a ctx with an earlier deadline is used as it is; any other
// ctx gets its own deadline, RedisTimeout away, and keeps its values.
func TestBoundKeepsRedisTimeout(t *testing.T) {
	l, _ := newTestLimiter(t, userConfig(time.Second, 5, time.Minute))
	d := l.cfg.RedisTimeout
	var s sharedTimeout
	now := time.Now()
	first := s.get(now, d)
	if dl, _ := first.Deadline(); !dl.Equal(now.Add(d)) {
		t.Fatalf("deadline %v after now, want %v", dl.Sub(now), d)
	}
	if again := s.get(now.Add(d/8), d); again != first {
		t.Errorf("an eighth later: a new context, want the shared one")
	}
	later := s.get(now.Add(d/8+time.Millisecond), d)
	if later == first {
		t.Fatal("past an eighth: the shared context again, bounded by less than 7/8")
	}
	if dl, _ := later.Deadline(); !dl.Equal(now.Add(d/8 + time.Millisecond + d)) {
		t.Errorf("new deadline %v after now, want %v", dl.Sub(now), d/8+time.Millisecond+d)
	}

	ctx, cancel := l.bound(context.Background())
	dl, ok := ctx.Deadline()
	cancel()
	if left := time.Until(dl); !ok || left > d || left < d/2 {
		t.Errorf("Background: deadline in %v (set %v), want at most %v (and not far below: 7/8 of it when shared)", left, ok, d)
	}
	short, stop := context.WithTimeout(context.Background(), d/2)
	defer stop()
	if ctx, cancel := l.bound(short); ctx != short {
		t.Error("a ctx with an earlier deadline: not used as it is")
	} else {
		cancel()
	}
	type key struct{}
	valued := context.WithValue(context.Background(), key{}, "v")
	ctx, cancel = l.bound(valued)
	defer cancel()
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d || ctx.Value(key{}) != "v" {
		t.Errorf("a ctx with a value: deadline %v (set %v), value %v", time.Until(dl), ok, ctx.Value(key{}))
	}
}
