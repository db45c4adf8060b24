package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// stallTimeout is RedisTimeout in the stalled-Redis tests; stallSlack is
// the scheduling a loaded machine may add.
const (
	stallTimeout = time.Second
	stallSlack   = time.Second
)

// stalledEnv starts a redis-server and a Limiter on it (RedisTimeout
// stallTimeout); pause stalls Redis (CLIENT PAUSE: it accepts connections
// and answers nothing) for longer than any call may take.
func stalledEnv(t *testing.T) (l *limiter.Limiter, pause func()) {
	t.Helper()
	ctx := context.Background()
	srv := startRedis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() {
		admin.Do(context.Background(), "client", "unpause")
		admin.Close()
	})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = stallTimeout
	cfg.LocalCacheSize = 0
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	return l, func() {
		t.Helper()
		ms := (stallTimeout + stallSlack + 2*time.Second).Milliseconds()
		if err := admin.Do(context.Background(), "client", "pause", ms, "all").Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackoffDoLateByAtMostRedisTimeout: docs/reliability.md, Deadlines:
// Backoff.Do reports fn's outcome without ctx's cancellation, so it may
// return up to RedisTimeout after ctx ended, and no later, even when
// Redis answers nothing.
func TestBackoffDoLateByAtMostRedisTimeout(t *testing.T) {
	skipIfShort(t) // -short: the fast tier keeps a quicker test of this area
	l, pause := stalledEnv(t)
	b, err := l.Backoff("llm", limiter.BackoffSettings{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var ended time.Time
	err = b.Do(ctx, "http://llm", func(context.Context) error {
		pause()
		cancel()
		ended = time.Now()
		return nil // a Success to report, to a Redis that does not answer
	})
	late := time.Since(ended)
	t.Logf("Do returned %v after its context ended (RedisTimeout %v): %v", late, stallTimeout, err)
	if late > stallTimeout+stallSlack {
		t.Errorf("Do returned %v after its context ended, want at most RedisTimeout (%v) + %v", late, stallTimeout, stallSlack)
	}
	if late < stallTimeout/2 {
		t.Errorf("Do returned %v after its context ended: did it report at all? (want about RedisTimeout, %v)", late, stallTimeout)
	}
}

// TestNoDeadlineCallOnStalledRedis: a call whose context has no deadline
// is still bounded by RedisTimeout when Redis answers nothing, and gives
// the FailureMode's decision (Degraded), not an error.
func TestNoDeadlineCallOnStalledRedis(t *testing.T) {
	skipIfShort(t) // -short: the fast tier keeps a quicker test of this area
	l, pause := stalledEnv(t)
	pause()
	ctx := context.Background()
	start := time.Now()
	d, err := l.Allow(ctx, "stalled")
	took := time.Since(start)
	t.Logf("Allow with no deadline on a stalled Redis: %v, %+v, %v", took, d, err)
	if took > stallTimeout+stallSlack {
		t.Errorf("Allow with no deadline took %v on a stalled Redis, want at most RedisTimeout (%v) + %v", took, stallTimeout, stallSlack)
	}
	if err != nil || !d.Degraded || !d.Allowed {
		t.Errorf("Allow on a stalled Redis = %+v, %v; want a Degraded admission (FailLocal), nil error", d, err)
	}
	b, err := l.Bucket("api", limiter.BucketSettings{PerSecond: 1, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	bd, err := b.Allow(ctx)
	if took := time.Since(start); took > stallTimeout+stallSlack || err != nil || !bd.Degraded {
		t.Errorf("Bucket.Allow with no deadline on a stalled Redis: %v, %+v, %v", took, bd, err)
	}
}
