package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
		{30 * time.Second, denied(ReasonWindow, 0, 30*time.Second, 50*time.Second)},
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
	if n := lu.held(); n > maxLocalUsers+denyShards || n != int(lu.users.Load()) {
		t.Fatalf("%d local users (counted %d), bound %d", n, lu.users.Load(), maxLocalUsers)
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
	// Redis is back, but does not know about the request the fallback
	// admitted: its cooldown still holds, answered in-process.
	if err := r.mr.Restart(); err != nil {
		t.Fatal(err)
	}
	// Users the fallback did not admit are Redis's to decide.
	if d := mustAllow(t, l, "v"); !d.Allowed || d.Degraded || d.Cached {
		t.Fatalf("another user after restart: %+v", d)
	}
	d = mustAllow(t, l, "u")
	if d.Allowed || d.Degraded || !d.Cached || d.Reason != ReasonCooldown || d.RetryAfter <= 9*time.Second {
		t.Fatalf("after restart, inside the cooldown begun in the outage: %+v", d)
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
		mustAllow(t, l, fmt.Sprint("u", i)) // new users: each reaches Redis
	}
	marked := time.Now()
	n0 := tries()
	for i := 0; i < 100; i++ {
		// A user each: a repeat would be answered by the fallback's
		// precheck without a call to short-circuit.
		if d := mustAllow(t, l, fmt.Sprint("v", i)); !d.Degraded {
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
// count of held times (by capacity) matches what the shards hold and stays
// within the bound after every call.
func TestLocalUsersBoundedByEntries(t *testing.T) {
	lu := newLocalUsers(userConfig(0, 127, time.Hour))
	lu.maxEntries = 80 // per shard
	t0 := time.Now()
	for i := 0; i < 2000*100; i++ {
		lu.allow(fmt.Sprint("u", i%2000), t0.Add(time.Duration(i)*time.Microsecond))
		if i%1000 == 0 {
			for j := range lu.shards {
				if e := lu.shards[j].entries; e > lu.maxEntries {
					t.Fatalf("after %d calls: shard %d holds %d times, bound %d", i+1, j, e, lu.maxEntries)
				}
			}
		}
	}
	held, counted, pending := 0, 0, 0
	for j := range lu.shards {
		counted += lu.shards[j].entries
		for _, u := range lu.shards[j].m {
			held += cap(u.times)
			if len(u.times) > 0 {
				pending++
			}
		}
	}
	if held != counted || int(lu.users.Load()) != lu.held() || int(lu.pending.Load()) != pending {
		t.Fatalf("books: %d times, %d users, %d pending counted; %d, %d and %d held", counted, lu.users.Load(), lu.pending.Load(), held, lu.held(), pending)
	}
	// The newest caller's own history survives the eviction it caused.
	if d := lu.allow("u1999", t0.Add(time.Hour-time.Second)); d.Remaining >= 126 {
		t.Fatalf("the caller's own history was evicted: %+v", d)
	}
}

// held counts the users lu holds.
func (lu *localUsers) held() int {
	n := 0
	for j := range lu.shards {
		lu.shards[j].mu.Lock()
		n += len(lu.shards[j].m)
		lu.shards[j].mu.Unlock()
	}
	return n
}

// TestLocalAdmissionsKeptUntilWindowPasses: what the fallback admitted
// on its own stays until the window has passed, Redis back or not; a user
// with none left is not checked in-process (one atomic load).
func TestLocalAdmissionsKeptUntilWindowPasses(t *testing.T) {
	lu := newLocalUsers(userConfig(time.Second, 2, time.Minute))
	t0 := time.Now()
	if d := lu.allow("u", t0); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("first local admission: %+v", d)
	}
	if d, ok := lu.precheck("u", t0.Add(500*time.Millisecond)); !ok || d.Reason != ReasonCooldown || d.RetryAfter != 500*time.Millisecond || !d.Cached {
		t.Fatalf("precheck inside the cooldown = %+v, %v; want a 500ms cooldown denial", d, ok)
	}
	if _, ok := lu.precheck("u", t0.Add(2*time.Second)); ok {
		t.Fatal("precheck denied after the cooldown with room in the window")
	}
	lu.allow("u", t0.Add(2*time.Second))
	if d, ok := lu.precheck("u", t0.Add(3*time.Second)); !ok || d.Reason != ReasonWindow || d.RetryAfter != 57*time.Second {
		t.Fatalf("precheck with the window full = %+v, %v; want 57s", d, ok)
	}
	if _, ok := lu.precheck("u", t0.Add(time.Minute+2*time.Second)); ok || lu.pending.Load() != 0 {
		t.Fatalf("precheck after the window: denied, or %d users still pending", lu.pending.Load())
	}
}

// TestFlappingRedisKeepsTheLimit: with Redis down for a moment again and
// again, one replica admits a user at most the limit per window in all
// (through Redis and on its own), and N replicas at most N times it: the
// fallback starts from what Redis last said and keeps what it admitted.
func TestFlappingRedisKeepsTheLimit(t *testing.T) {
	cfg := userConfig(0, 3, time.Hour)
	cfg.OnRedisError = FailLocal
	cfg.RedisTimeout = 200 * time.Millisecond
	r := newTestRedis(t)
	replica := func() *Limiter {
		rdb := redis.NewClient(&redis.Options{Addr: r.mr.Addr(), MaxRetries: -1})
		t.Cleanup(func() { rdb.Close() })
		l, err := New(rdb, cfg)
		if err != nil {
			t.Fatal(err)
		}
		l.health.interval = 0
		return l
	}
	a, b := replica(), replica()
	admitted := map[*Limiter]int{}
	degraded := 0
	try := func(l *Limiter, n int) {
		for range n {
			d := mustAllow(t, l, "u")
			if d.Allowed {
				admitted[l]++
				if d.Degraded {
					degraded++
				}
			}
		}
	}
	try(a, 1) // through Redis: a has seen one request in the window
	for outage := range 4 {
		r.mr.Close()
		try(a, 1+outage)
		try(b, 1+outage)
		if err := r.mr.Restart(); err != nil {
			t.Fatal(err)
		}
		try(a, 2)
		try(b, 2)
	}
	// a: 1 through Redis, 1 on its own (outage 0), 1 through Redis after
	// it; b: 1 on its own, 1 through Redis (which then holds 3). Each
	// replica within the limit, both within twice it, and nothing more
	// in the three outages that followed.
	if admitted[a] != 3 || admitted[b] != 2 || degraded != 2 {
		t.Fatalf("admitted %d by a, %d by b (%d on their own); want 3 and 2 (2 on their own)", admitted[a], admitted[b], degraded)
	}

	// One replica, no history in Redis: however the outages fall, the
	// limit holds over the window, through Redis or not.
	r2 := newTestRedis(t)
	r = r2
	c := replica()
	for outage := range 3 {
		r.mr.Close()
		try(c, 1)
		if err := r.mr.Restart(); err != nil {
			t.Fatal(err)
		}
		try(c, outage)
	}
	if admitted[c] != 3 {
		t.Fatalf("one replica admitted %d across 3 outages, want the limit, 3", admitted[c])
	}
}

// TestFallbackStartsFromRedis: the cooldown Redis started holds in the
// fallback when Redis goes away right after.
func TestFallbackStartsFromRedis(t *testing.T) {
	l, r := newTestLimiter(t, func() Config {
		cfg := userConfig(10*time.Second, 20, time.Hour)
		cfg.RedisTimeout = 200 * time.Millisecond
		return cfg
	}())
	l.health.interval = 0
	if d := mustAllow(t, l, "u"); !d.Allowed || d.Degraded {
		t.Fatalf("through Redis: %+v", d)
	}
	r.mr.Close()
	d := mustAllow(t, l, "u")
	if d.Allowed || !d.Degraded || d.Reason != ReasonCooldown || d.RetryAfter <= 9*time.Second || d.Remaining != 19 {
		t.Fatalf("in the outage, inside the cooldown Redis started: %+v", d)
	}
}
