package limiter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
)

// epoch is where every miniredis clock starts: a round, recent instant.
var epoch = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// testRedis is a miniredis whose clock only moves when the test says.
type testRedis struct {
	t   testing.TB
	mr  *miniredis.Miniredis
	rdb *redis.Client
	now time.Time
}

func newTestRedis(t testing.TB) *testRedis {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.SetTime(epoch)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return &testRedis{t: t, mr: mr, rdb: rdb, now: epoch}
}

// advance moves both the TIME the scripts read and the TTLs.
func (r *testRedis) advance(d time.Duration) {
	r.t.Helper()
	r.now = r.now.Add(d)
	r.mr.SetTime(r.now)
	r.mr.FastForward(d)
}

// at moves the clock to epoch+d (never backwards).
func (r *testRedis) at(d time.Duration) {
	r.t.Helper()
	target := epoch.Add(d)
	if target.Before(r.now) {
		r.t.Fatalf("at(%v): clock is already at %v", d, r.now.Sub(epoch))
	}
	r.advance(target.Sub(r.now))
}

func newTestLimiter(t *testing.T, cfg Config) (*Limiter, *testRedis) {
	t.Helper()
	r := newTestRedis(t)
	l, err := New(r.rdb, cfg)
	return must(t, l, err, "New"), r
}

// refused reports whether err is a refusal as the package words them: it
// wraps want, mentions mention and starts with the package name.
func refused(err, want error, mention string) bool {
	return errors.Is(err, want) && strings.Contains(err.Error(), mention) && strings.HasPrefix(err.Error(), "limiter: ")
}

// clientLimiter is New on NewClient(cfg)'s client, which is closed when
// the test ends.
func clientLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	rdb, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { rdb.Close() })
	l, err := New(rdb, cfg)
	return must(t, l, err, "New")
}

// userConfig is DefaultConfig with the given per-user limits and the
// cache off, so every decision reaches Redis.
func userConfig(cooldown time.Duration, limit int, window time.Duration) Config {
	cfg := DefaultConfig()
	cfg.UserCooldown = cooldown
	cfg.MaxRequestsPerUserHour = limit
	cfg.UserWindow = window
	cfg.LocalCacheSize = 0
	return cfg
}

// must returns v, or fails the test naming the call (a format and its
// args) when err is set: the one body behind the mustX helpers.
func must[T any](t testing.TB, v T, err error, call string, args ...any) T {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(call, args...), err)
	}
	return v
}

func mustAllow(t *testing.T, l *Limiter, user string) Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), user)
	return must(t, d, err, "Allow(%q)", user)
}

func init() {
	// go-redis logs every failed dial; the outage tests make many on purpose.
	redis.SetLogger(cli.QuietLogger{})
	// New's background INFO would land amid the tests' command counts;
	// eviction_test.go turns it on where it is tested.
	checkAtStart.Store(false)
}

// recordObserver records every decision, with its policy, and every Redis
// operation.
type recordObserver struct {
	mu        sync.Mutex
	policies  []string
	decisions []Decision
	ops       []string
}

func (o *recordObserver) ObserveDecision(policy string, d Decision) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.policies = append(o.policies, policy)
	o.decisions = append(o.decisions, d)
}

func (o *recordObserver) ObserveRedis(op string, _ time.Duration, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ops = append(o.ops, op)
}

// roundTrips is how many Redis operations were reported.
func (o *recordObserver) roundTrips() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.ops)
}
