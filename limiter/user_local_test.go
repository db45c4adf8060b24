package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestLocalUsersMirrorsScript(t *testing.T) {
	lu := newLocalUsers(userConfig(10*time.Second, 3, time.Minute))
	t0 := time.Now()
	for _, s := range []struct {
		at   time.Duration
		want Decision
	}{
		{0, allowed(2, time.Minute)},
		{9999 * time.Millisecond, denied(ReasonCooldown, 2, time.Millisecond, time.Minute-9999*time.Millisecond)},
		{10 * time.Second, allowed(1, time.Minute)},
		{20 * time.Second, allowed(0, time.Minute)},
		{30 * time.Second, denied(ReasonHourly, 0, 30*time.Second, 50*time.Second)},
		{time.Minute, allowed(0, time.Minute)},
	} {
		if got := lu.allow("u", t0.Add(s.at)); got != s.want {
			t.Fatalf("at %v: got %+v, want %+v", s.at, got, s.want)
		}
	}
	lu.reset("u")
	if got := lu.allow("u", t0.Add(time.Minute)); !got.Allowed || got.Remaining != 2 {
		t.Fatalf("after reset: %+v", got)
	}
}

func TestLocalUsersBounded(t *testing.T) {
	lu := newLocalUsers(userConfig(0, 1, time.Hour))
	t0 := time.Now()
	for i := 0; i < maxLocalUsers+500; i++ {
		lu.allow(string(rune(i))+"x", t0)
	}
	if n := len(lu.m); n > maxLocalUsers {
		t.Fatalf("%d local users, bound %d", n, maxLocalUsers)
	}
}

// outage closes miniredis and returns a Limiter that retries Redis on
// every call (no health interval), so tests need no real waiting.
func outageLimiter(t *testing.T, mode FailureMode) (*Limiter, *testRedis) {
	t.Helper()
	cfg := userConfig(10*time.Second, 20, time.Hour)
	cfg.OnRedisError = mode
	cfg.RedisTimeout = 200 * time.Millisecond
	l, r := newTestLimiter(t, cfg)
	l.health.interval = 0
	mustAllow(t, l, "before")
	r.mr.Close()
	return l, r
}

func TestOutageFailLocal(t *testing.T) {
	l, r := outageLimiter(t, FailLocal)
	d := mustAllow(t, l, "u")
	if !d.Allowed || !d.Degraded || d.Remaining != 19 {
		t.Fatalf("first request in outage: %+v", d)
	}
	d = mustAllow(t, l, "u")
	if d.Allowed || !d.Degraded || d.Reason != ReasonCooldown {
		t.Fatalf("second request in outage: %+v", d)
	}
	// Redis is back: shared limits again, by themselves.
	if err := r.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	d = mustAllow(t, l, "u")
	if !d.Allowed || d.Degraded {
		t.Fatalf("after restart: %+v", d)
	}
}

func TestOutageFailOpenAndClosed(t *testing.T) {
	l, _ := outageLimiter(t, FailOpen)
	for i := 0; i < 3; i++ {
		if d := mustAllow(t, l, "u"); !d.Allowed || !d.Degraded {
			t.Fatalf("fail-open: %+v", d)
		}
	}
	l, _ = outageLimiter(t, FailClosed)
	if d := mustAllow(t, l, "u"); d.Allowed || !d.Degraded || d.Reason != ReasonRedisDown || d.RetryAfter <= 0 {
		t.Fatalf("fail-closed: %+v", d)
	}
}

// attemptCounter counts the round trips a Limiter attempts.
type attemptCounter struct{ redis atomic.Int64 }

func (o *attemptCounter) ObserveDecision(string, Decision)          {}
func (o *attemptCounter) ObserveRedis(string, time.Duration, error) { o.redis.Add(1) }

// TestOutageShortCircuits: docs/reliability.md, "No waiting on a dead
// server": once Redis is marked down calls skip it for 1 s and decide
// locally at once; the first call after that tries again, and shared
// limits resume by themselves when Redis answers. The figures are the
// docs', not the package's constants.
func TestOutageShortCircuits(t *testing.T) {
	obs := &attemptCounter{}
	cfg := userConfig(10*time.Second, 20, time.Hour)
	cfg.Observer = obs
	cfg.RedisTimeout = 100 * time.Millisecond
	l, r := newTestLimiter(t, cfg)
	mustAllow(t, l, "before")
	r.mr.Close()
	tries := func() int64 { return obs.redis.Load() }
	// go-redis retries refused dials until RedisTimeout, so the outage
	// shows as timeouts: 3 in a row mark Redis down.
	for i := 0; l.health.check() == nil; i++ {
		if i == 3 {
			t.Fatal("3 failed calls in a row did not mark Redis down")
		}
		mustAllow(t, l, "u")
	}
	marked := time.Now()
	n0 := tries()
	for i := 0; i < 100; i++ {
		if d := mustAllow(t, l, "v"); !d.Degraded {
			t.Fatalf("call %d while Redis is down: %+v", i, d)
		}
	}
	if n := tries() - n0; n != 0 {
		t.Fatalf("%d of 100 calls tried a Redis marked down, want none", n)
	}
	_, err := l.run(context.Background(), userAllow, []string{"k"}, 1, 1, 1)
	if !errors.Is(err, ErrRedisUnavailable) || !IsUnavailable(err) {
		t.Fatalf("run while down = %v, want ErrRedisUnavailable", err)
	}
	// Still skipped shortly before 1 s...
	time.Sleep(time.Until(marked.Add(800 * time.Millisecond)))
	before := tries()
	mustAllow(t, l, "w")
	if tries() != before {
		t.Fatal("a call 0.8 s after Redis was marked down tried it, want skipped for 1 s")
	}
	// ...tried again after it, and shared once Redis answers.
	if err := r.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(marked.Add(time.Second + 50*time.Millisecond)))
	before = tries()
	if d := mustAllow(t, l, "x"); d.Degraded || tries() != before+1 {
		t.Fatalf("1 s after Redis was marked down: %+v after %d attempts, want a shared decision after 1", d, tries()-before)
	}
}

func TestCallerCancellationIsNotAnOutage(t *testing.T) {
	l, _ := newTestLimiter(t, userConfig(10*time.Second, 20, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Allow(ctx, "u"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Allow with a cancelled context = %v", err)
	}
	if err := l.health.check(); err != nil {
		t.Fatalf("a caller's cancellation marked Redis down: %v", err)
	}
}

// TestHealthMarksDown: docs/reliability.md: a refused connection, or 3
// timeouts in a row, mark Redis down for 1 s (figures written out here,
// not read from the package's constants).
func TestHealthMarksDown(t *testing.T) {
	ctx := context.Background()
	timeout := fmt.Errorf("read: %w", context.DeadlineExceeded)
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	l, _ := newTestLimiter(t, DefaultConfig())
	h := &l.health
	// downFor is how long h skips Redis from now, 0 when it is up.
	downFor := func() time.Duration {
		if h.check() == nil {
			return 0
		}
		return time.Until(time.Unix(0, h.downUntil.Load()))
	}
	h.failed(ctx, timeout)
	h.failed(ctx, timeout)
	if d := downFor(); d != 0 {
		t.Fatalf("down for %v after 2 timeouts, want up until 3 in a row", d)
	}
	h.ok() // an answer in between resets the count
	h.failed(ctx, timeout)
	h.failed(ctx, timeout)
	if d := downFor(); d != 0 {
		t.Fatal("timeouts separated by an answer marked Redis down")
	}
	h.failed(ctx, timeout)
	if err := h.check(); !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("after 3 timeouts in a row: %v", err)
	}
	if d := downFor(); d <= 900*time.Millisecond || d > time.Second {
		t.Fatalf("after 3 timeouts in a row Redis is skipped for %v, want 1 s", d)
	}
	h.ok()
	h.failed(ctx, refused)
	if d := downFor(); d <= 900*time.Millisecond || d > time.Second {
		t.Fatalf("a refused connection marks Redis down for %v, want 1 s at once", d)
	}
	h.ok()
	h.failed(ctx, errors.New("ERR some script error"))
	h.failed(ctx, errors.New("ERR some script error"))
	h.failed(ctx, errors.New("ERR some script error"))
	if h.check() != nil {
		t.Fatal("Redis answering with errors was taken for an outage")
	}
}

// TestLocalUsersBoundedByEntries: request times, not only users, are
// bounded (100k users x 127 times each used to be allowed: ~300 MB); the
// count of held times (by capacity) matches what the map holds and stays
// within the bound after every call.
func TestLocalUsersBoundedByEntries(t *testing.T) {
	lu := newLocalUsers(userConfig(0, 127, time.Hour))
	lu.maxEntries = 5000
	t0 := time.Now()
	for i := 0; i < 200*100; i++ {
		lu.allow(fmt.Sprint("u", i%200), t0.Add(time.Duration(i)*time.Microsecond))
		if lu.entries > lu.maxEntries {
			t.Fatalf("after %d calls: %d times held, bound %d", i+1, lu.entries, lu.maxEntries)
		}
	}
	held := 0
	for _, times := range lu.m {
		held += cap(times)
	}
	if held != lu.entries || int(lu.users.Load()) != len(lu.m) {
		t.Fatalf("books: %d times and %d users counted, %d and %d held", lu.entries, lu.users.Load(), held, len(lu.m))
	}
	// The newest caller's own history survives the eviction it caused.
	if d := lu.allow("u199", t0.Add(time.Hour-time.Second)); d.Remaining >= 126 {
		t.Fatalf("the caller's own history was evicted: %+v", d)
	}
}

// TestLocalFallbackDroppedWhenRedisBack: after an outage, the first answer
// from Redis for a user drops that user's fallback entry, and once the
// fallback has gone unused for localIdleDrop the next answer empties it.
func TestLocalFallbackDroppedWhenRedisBack(t *testing.T) {
	l, r := outageLimiter(t, FailLocal)
	for _, u := range []string{"a", "b", "c"} {
		if d := mustAllow(t, l, u); !d.Degraded {
			t.Fatalf("in outage: %+v", d)
		}
	}
	if n := l.local.users.Load(); n != 3 {
		t.Fatalf("fallback holds %d users, want 3", n)
	}
	if err := r.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	if d := mustAllow(t, l, "a"); d.Degraded {
		t.Fatalf("after restart: %+v", d)
	}
	l.local.mu.Lock()
	_, aHeld := l.local.m["a"]
	n := len(l.local.m)
	l.local.mu.Unlock()
	if aHeld || n != 2 {
		t.Fatalf("after Redis answered for a: a held %v, %d users left; want a dropped, 2 left", aHeld, n)
	}
	// The fallback last used localIdleDrop ago: the next answer empties it.
	l.local.lastUse.Add(-int64(localIdleDrop))
	mustAllow(t, l, "z")
	if n := l.local.users.Load(); n != 0 || len(l.local.m) != 0 || l.local.entries != 0 {
		t.Fatalf("fallback still holds %d users, %d times after Redis came back", n, l.local.entries)
	}
}
