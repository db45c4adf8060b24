package limiter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// step is one request at an instant (from epoch) and the exact decision.
type step struct {
	at   time.Duration
	want Decision
}

func runSteps(t *testing.T, l *Limiter, r *testRedis, user string, steps []step) {
	t.Helper()
	for i, s := range steps {
		r.at(s.at)
		got := mustAllow(t, l, user)
		if got != s.want {
			t.Fatalf("step %d at %v:\n got %+v\nwant %+v", i, s.at, got, s.want)
		}
	}
}

func allowed(remaining int, reset time.Duration) Decision {
	return Decision{Allowed: true, Remaining: remaining, ResetAfter: reset}
}

func denied(reason Reason, remaining int, retry, reset time.Duration) Decision {
	return Decision{Reason: reason, Remaining: remaining, RetryAfter: retry, ResetAfter: reset}
}

func TestCooldownEdges(t *testing.T) {
	const ms = time.Millisecond
	l, r := newTestLimiter(t, userConfig(10*time.Second, 20, time.Hour))
	runSteps(t, l, r, "alice", []step{
		{0, allowed(19, time.Hour)},
		{4 * time.Second, denied(ReasonCooldown, 19, 6*time.Second, time.Hour-4*time.Second)},
		{9999 * ms, denied(ReasonCooldown, 19, 1*ms, time.Hour-9999*ms)},
		{10 * time.Second, allowed(18, time.Hour)},
		{10*time.Second + 1*ms, denied(ReasonCooldown, 18, 9999*ms, time.Hour-1*ms)},
		{20 * time.Second, allowed(17, time.Hour)},
	})
}

func TestCooldownOnlyUsesStringKey(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 0, time.Hour))
	runSteps(t, l, r, "bob", []step{
		{0, allowed(Unlimited, 10*time.Second)},
		{3 * time.Second, denied(ReasonCooldown, Unlimited, 7*time.Second, 7*time.Second)},
		{9999 * time.Millisecond, denied(ReasonCooldown, Unlimited, time.Millisecond, time.Millisecond)},
		{10 * time.Second, allowed(Unlimited, 10*time.Second)},
	})
	key := "floodgate:{u:bob}:cd"
	if ttl := r.mr.TTL(key); ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("TTL of %s = %v, want in (0, 10s]", key, ttl)
	}
	if r.mr.Exists("floodgate:{u:bob}:w") {
		t.Fatal("cooldown-only mode wrote a window key")
	}
}

func TestWindowExact(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 20, time.Hour))
	var steps []step
	// 20 requests, one a minute: each allowed, Remaining counting down.
	for i := 0; i < 20; i++ {
		at := time.Duration(i) * time.Minute
		steps = append(steps, step{at, allowed(19-i, time.Hour)})
	}
	// The 21st within the hour: denied until the first (at 0) ages out at 1h.
	steps = append(steps,
		step{20 * time.Minute, denied(ReasonWindow, 0, 40*time.Minute, 59*time.Minute)},
		step{time.Hour - time.Millisecond, denied(ReasonWindow, 0, time.Millisecond, 19*time.Minute+time.Millisecond)},
		// Exactly when the oldest ages out, the same request passes...
		step{time.Hour, allowed(0, time.Hour)},
		// ...and the next waits for the second oldest (at 1m).
		step{time.Hour + 30*time.Second, denied(ReasonWindow, 0, 30*time.Second, time.Hour-30*time.Second)},
		step{time.Hour + time.Minute, allowed(0, time.Hour)},
	)
	runSteps(t, l, r, "carol", steps)
	if n, _ := r.rdb.ZCard(context.Background(), "floodgate:{u:carol}:w").Result(); n != 21 {
		t.Fatalf("window holds %d members, want 20 requests + the base", n)
	}
}

func TestDeniedRequestConsumesNothing(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 3, time.Minute))
	ctx := context.Background()
	mustAllow(t, l, "dave")
	before, _ := r.rdb.ZRangeWithScores(ctx, "floodgate:{u:dave}:w", 0, -1).Result()
	ttlBefore := r.mr.TTL("floodgate:{u:dave}:w")
	for i := 0; i < 50; i++ {
		if d := mustAllow(t, l, "dave"); d.Allowed {
			t.Fatalf("request %d allowed during cooldown", i)
		}
	}
	after, _ := r.rdb.ZRangeWithScores(ctx, "floodgate:{u:dave}:w", 0, -1).Result()
	if len(before) != len(after) {
		t.Fatalf("denials changed the window: %v -> %v", before, after)
	}
	for i := range before {
		if before[i] != after[i] {
			t.Fatalf("denials changed the window: %v -> %v", before, after)
		}
	}
	if ttl := r.mr.TTL("floodgate:{u:dave}:w"); ttl != ttlBefore {
		t.Fatalf("denials changed the TTL: %v -> %v", ttlBefore, ttl)
	}
}

func TestWindowOnlyNoCooldown(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 3, time.Minute))
	runSteps(t, l, r, "erin", []step{
		{0, allowed(2, time.Minute)},
		{0, allowed(1, time.Minute)},
		{0, allowed(0, time.Minute)},
		{0, denied(ReasonWindow, 0, time.Minute, time.Minute)},
		{59 * time.Second, denied(ReasonWindow, 0, time.Second, time.Second)},
		// All three aged out together at exactly 1m.
		{time.Minute, allowed(2, time.Minute)},
		{time.Minute, allowed(1, time.Minute)},
	})
}

func TestSameMillisecondMembersStayUnique(t *testing.T) {
	// Many requests in one instant: each needs its own member, or ZADD would
	// overwrite one and the window would under-count.
	l, r := newTestLimiter(t, userConfig(0, MaxWindowRequests, time.Hour))
	for i := 0; i < MaxWindowRequests; i++ {
		if d := mustAllow(t, l, "frank"); !d.Allowed || d.Remaining != MaxWindowRequests-1-i {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	if d := mustAllow(t, l, "frank"); d.Allowed {
		t.Fatalf("request %d allowed past the limit", MaxWindowRequests+1)
	}
	if n, _ := r.rdb.ZCard(context.Background(), "floodgate:{u:frank}:w").Result(); n != MaxWindowRequests+1 {
		t.Fatalf("window holds %d members, want %d", n, MaxWindowRequests+1)
	}
}

func TestWindowAgesOutAndRestarts(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 2, time.Minute))
	mustAllow(t, l, "gina")
	mustAllow(t, l, "gina")
	r.at(10 * time.Minute) // key long expired
	if r.mr.Exists("floodgate:{u:gina}:w") {
		t.Fatal("window key outlived its TTL")
	}
	if d := mustAllow(t, l, "gina"); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("after idle: %+v", d)
	}
}

func TestRebaseKeepsScoresSmall(t *testing.T) {
	// A user active for days: the base must move so relative scores stay
	// small, and decisions stay exact across a rebase.
	l, r := newTestLimiter(t, userConfig(0, 3, time.Hour))
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		r.advance(25 * time.Minute)
		if d := mustAllow(t, l, "hank"); !d.Allowed {
			t.Fatalf("request %d at %v denied: %+v", i, r.now.Sub(epoch), d)
		}
		zs, err := r.rdb.ZRangeWithScores(ctx, "floodgate:{u:hank}:w", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range zs {
			if z.Member != "b" && (z.Score < 0 || z.Score > 8388607) {
				t.Fatalf("request %d: score %v outside 24 bits: %v", i, z.Score, zs)
			}
		}
	}
	// 3 per hour, 25 min apart: a 4th right now must wait for the oldest.
	mustAllow(t, l, "hank")
	d := mustAllow(t, l, "hank")
	if d.Allowed || d.Reason != ReasonWindow {
		t.Fatalf("limit not held after rebases: %+v", d)
	}
}

func TestEveryUserKeyHasTTL(t *testing.T) {
	for _, cfg := range []Config{
		userConfig(10*time.Second, 20, time.Hour),
		userConfig(10*time.Second, 0, time.Hour),
		userConfig(0, 5, time.Minute),
	} {
		l, r := newTestLimiter(t, cfg)
		for _, u := range []string{"a", "b{x}", "c:d", "\x00\xff"} {
			mustAllow(t, l, u)
		}
		keys := r.mr.Keys()
		if len(keys) != 4 {
			t.Fatalf("%d keys for 4 users: %q", len(keys), keys)
		}
		for _, k := range keys {
			if ttl := r.mr.TTL(k); ttl <= 0 || ttl > cfg.MaxIdleTime {
				t.Fatalf("key %q has TTL %v", k, ttl)
			}
		}
	}
}

func TestReset(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 20, time.Hour))
	ctx := context.Background()
	mustAllow(t, l, "ivy")
	if d := mustAllow(t, l, "ivy"); d.Allowed {
		t.Fatal("second request allowed in cooldown")
	}
	if err := l.Reset(ctx, "ivy"); err != nil {
		t.Fatal(err)
	}
	if len(r.mr.Keys()) != 0 {
		t.Fatalf("Reset left %q", r.mr.Keys())
	}
	if d := mustAllow(t, l, "ivy"); !d.Allowed || d.Remaining != 19 {
		t.Fatalf("after Reset: %+v", d)
	}
	if err := l.Reset(ctx, ""); !errors.Is(err, ErrInvalidUser) {
		t.Fatalf("Reset(\"\") = %v, want ErrInvalidUser", err)
	}
}

func TestBadUsers(t *testing.T) {
	l, r := newTestLimiter(t, DefaultConfig())
	for _, u := range []string{"", strings.Repeat("x", MaxUserLen+1)} {
		if _, err := l.Allow(context.Background(), u); !errors.Is(err, ErrInvalidUser) {
			t.Fatalf("Allow(%d bytes) = %v, want ErrInvalidUser", len(u), err)
		}
	}
	if len(r.mr.Keys()) != 0 {
		t.Fatalf("bad users reached Redis: %q", r.mr.Keys())
	}
	// The longest valid id and ids with key syntax in them are fine and
	// distinct.
	for _, u := range []string{strings.Repeat("y", MaxUserLen), "a}", "a", "{a}", "a:w"} {
		if d := mustAllow(t, l, u); !d.Allowed {
			t.Fatalf("first request of %q denied", u)
		}
	}
	if n := len(r.mr.Keys()); n != 5 {
		t.Fatalf("%d keys for 5 distinct users", n)
	}
}

func TestForeignKeyIsAnError(t *testing.T) {
	l, r := newTestLimiter(t, DefaultConfig())
	r.mr.ZAdd("floodgate:{u:zed}:w", 1, "x")
	if _, err := l.Allow(context.Background(), "zed"); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("Allow on a foreign sorted set = %v", err)
	}
	r.mr.Set("floodgate:{u:yan}:w", "string")
	if _, err := l.Allow(context.Background(), "yan"); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("Allow on a foreign string = %v", err)
	}
	// In a batch, a foreign key fails its own request only.
	d, err := l.AllowMany(context.Background(), []string{"ok1", "yan"})
	if !errors.Is(err, ErrForeignKey) || len(d) != 2 || !d[0].Allowed || d[1].Allowed || !strings.Contains(err.Error(), "users[1]") {
		t.Fatalf("AllowMany with a foreign key = %v, %v", d, err)
	}
	if ue, ok := errors.AsType[*UserError](err); !ok || ue.Index != 1 {
		t.Fatalf("AllowMany's error names users[1] as a *UserError: %#v", err)
	}
	if got := mustAllow(t, l, "ok1"); got.Allowed {
		t.Fatalf("ok1's request in the batch was not counted: %+v", got)
	}
}

func TestAllOff(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 0, time.Hour))
	for i := 0; i < 5; i++ {
		if d := mustAllow(t, l, "u"); !d.Allowed || d.Remaining != Unlimited {
			t.Fatalf("%+v", d)
		}
	}
	if len(r.mr.Keys()) != 0 {
		t.Fatal("policy off but keys written")
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	r := newTestRedis(t)
	if _, err := New(nil, DefaultConfig()); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	cfg := DefaultConfig()
	cfg.UserCooldown = -time.Second
	if _, err := New(r.rdb, cfg); err == nil || !strings.Contains(err.Error(), "FLOODGATE_USER_COOLDOWN") {
		t.Fatalf("New with negative cooldown = %v", err)
	}
}

func TestImportMatchesLiveTraffic(t *testing.T) {
	// The same history, once lived through Allow and once imported, must
	// leave identical decisions afterwards.
	cfg := userConfig(10*time.Second, 5, time.Hour)
	live, lr := newTestLimiter(t, cfg)
	imp, ir := newTestLimiter(t, cfg)
	offsets := []time.Duration{0, 7 * time.Minute, 20 * time.Minute, 41 * time.Minute, 59*time.Minute + 55*time.Second}
	var times []time.Time
	for _, o := range offsets {
		lr.at(o)
		if d := mustAllow(t, live, "u"); !d.Allowed {
			t.Fatalf("live request at %v denied", o)
		}
		times = append(times, epoch.Add(o))
	}
	ir.at(offsets[len(offsets)-1])
	// Older, out-of-window and extra times must not matter.
	extra := append([]time.Time{epoch.Add(-2 * time.Hour)}, times...)
	if err := imp.Import(context.Background(), "u", extra); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Duration{time.Hour, time.Hour + 7*time.Minute, time.Hour + 7*time.Minute + time.Millisecond} {
		lr.at(at)
		ir.at(at)
		a, b := mustAllow(t, live, "u"), mustAllow(t, imp, "u")
		if a != b {
			t.Fatalf("at %v: live %+v, imported %+v", at, a, b)
		}
	}
	if lt, it := lr.mr.TTL("floodgate:{u:u}:w"), ir.mr.TTL("floodgate:{u:u}:w"); lt != it {
		t.Fatalf("TTL live %v, imported %v", lt, it)
	}
}

func TestImportCooldownOnly(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 0, time.Hour))
	r.at(time.Minute)
	if err := l.Import(context.Background(), "v", []time.Time{epoch.Add(56 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, l, "v"); d.Allowed || d.RetryAfter != 6*time.Second {
		t.Fatalf("after import: %+v", d)
	}
	if err := l.Import(context.Background(), "", nil); !errors.Is(err, ErrInvalidUser) {
		t.Fatalf("Import(\"\") = %v", err)
	}
}

func TestWaitUser(t *testing.T) {
	cfg := userConfig(30*time.Millisecond, 0, time.Hour)
	l, _ := newTestLimiter(t, cfg)
	ctx := context.Background()
	// The success path sleeps through real time: see the integration test
	// TestWaitUserOnRealRedis. Here: the deadline and bad input.
	if _, err := l.Allow(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(short, "w"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past the deadline = %v", err)
	}
	if _, err := l.Wait(ctx, ""); !errors.Is(err, ErrInvalidUser) {
		t.Fatalf("Wait(\"\") = %v", err)
	}
}

// Only a plain (or Sentinel) client may carry many users per script: a
// Ring, like a Cluster, shards keys.
func TestMultiKeyOnlyOnOneNode(t *testing.T) {
	r := newTestRedis(t)
	l, _ := New(r.rdb, DefaultConfig())
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": r.mr.Addr()}})
	defer ring.Close()
	lr, _ := New(ring, DefaultConfig())
	if !l.multiKey || lr.multiKey {
		t.Fatalf("multiKey: client %v, ring %v", l.multiKey, lr.multiKey)
	}
}

// When Redis TIME goes backwards the key's clock stays ahead; its TTL and
// the waits handed back stretch by the skew, so the state does not vanish
// early in real time (which would admit more than the limit).
func TestClockBackwardsStretchesTTL(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 2, time.Minute))
	r.at(time.Minute)
	mustAllow(t, l, "c")
	r.mr.SetTime(epoch.Add(30 * time.Second)) // TIME steps back 30 s
	d := mustAllow(t, l, "c")
	if !d.Allowed || d.ResetAfter != 90*time.Second {
		t.Fatalf("after the step back: %+v, want allowed with ResetAfter 90s", d)
	}
	if ttl := r.mr.TTL("floodgate:{u:c}:w"); ttl != 90*time.Second {
		t.Fatalf("TTL %v, want 90s", ttl)
	}
	d = mustAllow(t, l, "c")
	if d.Allowed || d.RetryAfter != 90*time.Second {
		t.Fatalf("third request: %+v, want a wait of 90s of real time", d)
	}
}

func TestCooldownKeyWithoutTTL(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 0, time.Hour))
	r.mr.Set("floodgate:{u:ours}:cd", "1") // ours, lost its TTL
	if d := mustAllow(t, l, "ours"); d.Allowed || d.RetryAfter != 10*time.Second {
		t.Fatalf("own key without TTL: %+v", d)
	}
	if ttl := r.mr.TTL("floodgate:{u:ours}:cd"); ttl != 10*time.Second {
		t.Fatalf("TTL not restored: %v", ttl)
	}
	r.mr.Set("floodgate:{u:theirs}:cd", "session-data")
	if _, err := l.Allow(context.Background(), "theirs"); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("foreign key: %v", err)
	}
	if ttl := r.mr.TTL("floodgate:{u:theirs}:cd"); ttl != 0 {
		t.Fatalf("a foreign key was given a TTL: %v", ttl)
	}
}

// Issue 11 item 1: in the cooldown key's last millisecond PTTL rounds down
// to 0; the denial must still carry a wait, or the caller retries at once.
func TestCooldownLastMillisecondWaitsOneMs(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 0, time.Hour))
	mustAllow(t, l, "last")
	r.advance(10*time.Second - 500*time.Microsecond) // 0.5 ms of TTL left
	if st, err := l.Peek(context.Background(), "last"); err != nil || st.RetryAfter != time.Millisecond {
		t.Fatalf("Peek in the last millisecond: %+v, %v; want RetryAfter 1ms", st, err)
	}
	d := mustAllow(t, l, "last")
	if d.Allowed || d.RetryAfter != time.Millisecond || d.ResetAfter != time.Millisecond {
		t.Fatalf("in the last millisecond: %+v, want denied with RetryAfter and ResetAfter 1ms", d)
	}
	r.advance(time.Millisecond)
	if d := mustAllow(t, l, "last"); !d.Allowed {
		t.Fatalf("after the cooldown: %+v", d)
	}
}

// Issue 11 item 4: after TIME steps back, waits stretch by the skew but a
// TTL set before the step did not; no wait may outlast the key, since the
// user starts afresh once it is gone.
func TestClockBackwardsWaitWithinTTL(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 2, time.Minute))
	r.at(time.Minute)
	mustAllow(t, l, "s")
	mustAllow(t, l, "s")
	r.mr.SetTime(epoch.Add(30 * time.Second)) // TIME steps back 30 s; TTLs do not move
	ttl := r.mr.TTL("floodgate:{u:s}:w")
	st, err := l.Peek(context.Background(), "s")
	if err != nil {
		t.Fatal(err)
	}
	d := mustAllow(t, l, "s")
	if st.RetryAfter != d.RetryAfter || st.ResetAfter != d.ResetAfter {
		t.Fatalf("Peek said %+v, Allow then %+v", st, d)
	}
	if d.Allowed || d.Reason != ReasonWindow || d.RetryAfter != ttl || d.ResetAfter != ttl || ttl != time.Minute {
		t.Fatalf("after the step back: %+v with TTL %v, want a window denial waiting exactly the TTL (1m)", d, ttl)
	}
	// When the key is gone the user is admitted, as the wait said.
	r.advance(d.RetryAfter)
	if d := mustAllow(t, l, "s"); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("at the end of the wait: %+v", d)
	}
}

// Ids are handed out in turn modulo 128, and the set orders members of
// equal score as strings ("10" before "9"): bursts within one millisecond
// across the wrap must still give every live request its own member.
func TestIdsInTurnSurviveBurstsAndWrap(t *testing.T) {
	const limit = 13 // bursts that cross single/double/triple-digit ids and 127 -> 0
	l, r := newTestLimiter(t, userConfig(0, limit, time.Second))
	ctx := context.Background()
	key := "floodgate:{u:burst}:w"
	for round := 0; round < 40; round++ {
		r.advance(time.Second)
		for i := 0; i < limit; i++ {
			if d := mustAllow(t, l, "burst"); !d.Allowed || d.Remaining != limit-1-i {
				t.Fatalf("round %d request %d: %+v", round, i, d)
			}
		}
		if d := mustAllow(t, l, "burst"); d.Allowed {
			t.Fatalf("round %d: request %d allowed", round, limit+1)
		}
		if n, _ := r.rdb.ZCard(ctx, key).Result(); n != limit+1 {
			t.Fatalf("round %d: %d members, want %d requests + the base", round, n, limit)
		}
	}
	// Spread out too: one request per 100 ms, a live window of 10.
	r.advance(time.Second)
	for i := 0; i < 300; i++ {
		r.advance(100 * time.Millisecond)
		if d := mustAllow(t, l, "burst"); !d.Allowed {
			t.Fatalf("spread request %d: %+v", i, d)
		}
		if n, _ := r.rdb.ZCard(ctx, key).Result(); i >= 10 && n != 11 {
			t.Fatalf("spread request %d: %d members, want 10 + the base", i, n)
		}
	}
}

// A set written by an earlier version (lowest free id first, so the id
// after the newest may be live) loses no entry: a held id is never
// overwritten.
func TestOlderLayoutIdsNotOverwritten(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 5, time.Hour))
	ctx := context.Background()
	key := "floodgate:{u:old}:w"
	base := float64(epoch.UnixMilli())
	// Live ids 2, 0, 1 in time order: the newest is 1, and 2 is held.
	r.rdb.ZAdd(ctx, key, redis.Z{Score: base, Member: "b"}, redis.Z{Score: 0, Member: 2}, redis.Z{Score: 1000, Member: 0}, redis.Z{Score: 2000, Member: 1})
	r.rdb.PExpire(ctx, key, time.Hour)
	r.at(time.Minute)
	for i := 0; i < 2; i++ {
		if d := mustAllow(t, l, "old"); !d.Allowed || d.Remaining != 1-i {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	if d := mustAllow(t, l, "old"); d.Allowed {
		t.Fatalf("6th request within the hour allowed: %+v", d)
	}
	if n, _ := r.rdb.ZCard(ctx, key).Result(); n != 6 {
		t.Fatalf("%d members, want 5 requests + the base", n)
	}
}

// The allowed path reads the base and the newest entry only; entries that
// aged out are dropped once the base is older than the window, and the
// decisions stay exact when some have.
func TestAgedOutEntriesDroppedOnlyWhenBaseIsOld(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(0, 3, time.Minute))
	ctx := context.Background()
	key := "floodgate:{u:age}:w"
	runSteps(t, l, r, "age", []step{
		{0, allowed(2, time.Minute)},
		{20 * time.Second, allowed(1, time.Minute)},
		{40 * time.Second, allowed(0, time.Minute)},
		{50 * time.Second, denied(ReasonWindow, 0, 10*time.Second, 50*time.Second)},
		// The first ages out at 60s: admitted, and it is dropped.
		{60 * time.Second, allowed(0, time.Minute)},
		{61 * time.Second, denied(ReasonWindow, 0, 19*time.Second, 59*time.Second)},
	})
	if n, _ := r.rdb.ZCard(ctx, key).Result(); n != 4 {
		t.Fatalf("%d members, want 3 live requests + the base", n)
	}
	// All aged out: a fresh window, one entry.
	r.at(3 * time.Minute)
	if d := mustAllow(t, l, "age"); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("fresh window: %+v", d)
	}
	if n, _ := r.rdb.ZCard(ctx, key).Result(); n != 2 {
		t.Fatalf("%d members after a fresh start, want 1 + the base", n)
	}
}

// A limit of 1: the entry that must age out is the newest one.
func TestWindowOfOne(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 1, time.Minute))
	runSteps(t, l, r, "one", []step{
		{0, allowed(0, time.Minute)},
		// Both deny; the window's wait is the longer.
		{5 * time.Second, denied(ReasonWindow, 0, 55*time.Second, 55*time.Second)},
		{time.Minute - time.Millisecond, denied(ReasonWindow, 0, time.Millisecond, time.Millisecond)},
		{time.Minute, allowed(0, time.Minute)},
	})
}

// The script against the local mirror (user_local.go, a plain sliding log
// in Go) on random traffic: bursts in one millisecond, gaps around the
// cooldown and the window, ids wrapping many times. Every decision must
// match exactly.
func TestScriptMatchesPlainLog(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	configs := 8
	if testing.Short() {
		configs = 3 // the first 3 of the same 8, limit=MaxWindowRequests first
	}
	for c := 0; c < configs; c++ {
		limit := 1 + rng.IntN(12)
		if c == 0 {
			limit = MaxWindowRequests
		}
		window := time.Duration(1+rng.IntN(60)) * time.Second
		var cooldown time.Duration
		if rng.IntN(3) > 0 {
			cooldown = time.Duration(rng.Int64N(int64(window)/time.Millisecond.Nanoseconds())+1) * time.Millisecond
		}
		cfg := userConfig(cooldown, limit, window)
		t.Run(fmt.Sprintf("limit=%d,window=%v,cooldown=%v", limit, window, cooldown), func(t *testing.T) {
			l, r := newTestLimiter(t, cfg)
			model := newLocalUsers(cfg)
			for i := 0; i < 1000; i++ {
				switch k := rng.IntN(10); {
				case k < 4: // same millisecond
				case k < 7:
					r.advance(time.Duration(rng.IntN(50)) * time.Millisecond)
				case k < 9: // around the cooldown (whole ms: the scripts' clock)
					r.advance(time.Duration(rng.Int64N(cooldown.Milliseconds()+2)) * time.Millisecond)
				default: // around the window
					r.advance(time.Duration(rng.Int64N(window.Milliseconds()*5/4)) * time.Millisecond)
				}
				got := mustAllow(t, l, "p")
				want := model.allow("p", r.now)
				if got != want {
					t.Fatalf("decision %d at %v: script %+v, plain log %+v", i, r.now.Sub(epoch), got, want)
				}
			}
		})
	}
}

// A denial writes nothing even when the window holds entries that have aged
// out: only an admitted request drops them.
func TestDenialLeavesAgedOutEntries(t *testing.T) {
	l, r := newTestLimiter(t, userConfig(10*time.Second, 3, time.Minute))
	ctx := context.Background()
	key := "floodgate:{u:keep}:w"
	mustAllow(t, l, "keep")
	r.at(55 * time.Second)
	mustAllow(t, l, "keep")
	r.at(61 * time.Second) // the first has aged out; the cooldown holds
	before, _ := r.rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
	ttl := r.mr.TTL(key)
	if d := mustAllow(t, l, "keep"); d.Allowed || d.Reason != ReasonCooldown || d.Remaining != 2 || d.RetryAfter != 4*time.Second {
		t.Fatalf("in the cooldown: %+v", d)
	}
	after, _ := r.rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
	if len(before) != 3 || len(after) != len(before) || r.mr.TTL(key) != ttl {
		t.Fatalf("the denial wrote: %v -> %v, TTL %v -> %v", before, after, ttl, r.mr.TTL(key))
	}
	r.at(65 * time.Second)
	if d := mustAllow(t, l, "keep"); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("after the cooldown: %+v", d)
	}
	if n, _ := r.rdb.ZCard(ctx, key).Result(); n != 3 {
		t.Fatalf("%d members after the admission, want 2 live + the base", n)
	}
}

// slidingLog is the reference model of the per-user policy on an exact
// clock: a request at now passes when fewer than limit accepted requests
// are younger than window and the newest is at least cooldown old.
type slidingLog struct {
	limit            int
	window, cooldown time.Duration
	accepted         []time.Time
}

// wait is how long a request at now must wait to pass (0: it passes now).
func (m *slidingLog) wait(now time.Time) time.Duration {
	var w time.Duration
	if n := len(m.accepted); n > 0 && m.cooldown > 0 {
		w = max(w, m.accepted[n-1].Add(m.cooldown).Sub(now))
	}
	if m.limit > 0 && len(m.accepted) >= m.limit {
		w = max(w, m.accepted[len(m.accepted)-m.limit].Add(m.window).Sub(now))
	}
	return max(w, 0)
}

// The script never admits a request the exact sliding log would deny, not
// even by a microsecond: with Redis TIME stepping in sub-millisecond
// amounts, many requests land 1-999 µs before an entry ages out or a
// cooldown ends. A denial's RetryAfter is never shorter than the exact
// wait, and at most 1 ms longer once rounded up; waiting it out passes.
func TestNeverAdmitsEarlyWithSubMillisecondClock(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 1))
	for _, c := range []struct {
		limit            int
		window, cooldown time.Duration
	}{
		{1, 2 * time.Second, 0},
		{1, 2 * time.Second, 500 * time.Millisecond},
		{3, 2 * time.Second, 300 * time.Millisecond},
		{2, time.Second, 0},
	} {
		cfg := userConfig(c.cooldown, c.limit, c.window)
		t.Run(fmt.Sprintf("limit=%d,window=%v,cooldown=%v", c.limit, c.window, c.cooldown), func(t *testing.T) {
			l, r := newTestLimiter(t, cfg)
			r.advance(time.Duration(rng.Int64N(1000)) * time.Microsecond)
			model := &slidingLog{limit: c.limit, window: c.window, cooldown: c.cooldown}
			nearEdge, passedAfterWait := 0, 0
			for i := 0; i < 400; i++ {
				if w := model.wait(r.now); w > 0 {
					switch rng.IntN(3) {
					case 0: // 1-999 µs before the request may pass
						early := time.Duration(1+rng.IntN(999)) * time.Microsecond
						if early >= w {
							early = w / 2
						}
						r.advance(w - early)
						nearEdge++
					case 1: // at or just after it
						r.advance(w + time.Duration(rng.IntN(1500))*time.Microsecond)
					default:
						r.advance(time.Duration(rng.Int64N(int64(w))))
					}
				} else {
					r.advance(time.Duration(rng.IntN(3000)) * time.Microsecond)
				}
				want := model.wait(r.now)
				got := mustAllow(t, l, "u")
				if got.Allowed {
					if want > 0 {
						t.Fatalf("decision %d at %v: admitted %v early", i, r.now.Sub(epoch), want)
					}
					model.accepted = append(model.accepted, r.now)
					continue
				}
				if got.RetryAfter < want || got.RetryAfter > want+2*time.Millisecond || got.RetryAfter < time.Millisecond {
					t.Fatalf("decision %d at %v: RetryAfter %v, exact wait %v", i, r.now.Sub(epoch), got.RetryAfter, want)
				}
				if rng.IntN(4) == 0 { // wait it out: the request passes
					r.advance(got.RetryAfter)
					if d := mustAllow(t, l, "u"); !d.Allowed {
						t.Fatalf("decision %d: denied %+v after waiting RetryAfter %v", i, d, got.RetryAfter)
					}
					model.accepted = append(model.accepted, r.now)
					passedAfterWait++
				}
			}
			if nearEdge < 50 || passedAfterWait < 20 {
				t.Fatalf("only %d requests just before an edge, %d after a RetryAfter", nearEdge, passedAfterWait)
			}
		})
	}
}
