package limiter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fakeReply is a server error reply, as go-redis returns them.

type fakeReply string

func (e fakeReply) Error() string { return string(e) }

func (fakeReply) RedisError() {}

var _ redis.Error = fakeReply("")

func TestIsUnavailableReadsOnlyTheReply(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("limiter: user_allow on floodgate:{u:xEOFx}:w: %w", fakeReply("NOPERM this user has no permissions")), false},
		{fmt.Errorf("limiter: on floodgate:{u:READONLY}:w: %w", fakeReply("ERR script error")), false},
		{fmt.Errorf("limiter: on k: %w", fakeReply("LOADING Redis is loading the dataset in memory")), true},
		{fmt.Errorf("limiter: on k: %w", fakeReply("CLUSTERDOWN The cluster is down")), true},
		// READONLY alone is not an outage: the call path decides (health.readOnly).
		{fmt.Errorf("limiter: on k: %w", fakeReply("READONLY You can't write against a read only replica.")), false},
		{fmt.Errorf("limiter: on k: %w: %w", ErrReadOnly, fakeReply("READONLY You can't write against a read only replica.")), false},
		{fmt.Errorf("limiter: on k: %w", context.DeadlineExceeded), true},
		{errors.New("limiter: on floodgate:{u:i/o timeout}:w: boom"), false},
	} {
		if got := IsUnavailable(tc.err); got != tc.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// pastDeadline is a context in the instant after its deadline and before
// its timer has ended it: Err is still nil.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// A read that timed out at the caller's own deadline is the caller's, even
// when it comes back before ctx's timer has ended ctx.
func TestCallerDeadlineIsNoOutage(t *testing.T) {
	timeout := fmt.Errorf("limiter: user_allow on %q: %w", "k", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})
	ctx := pastDeadline{context.Background()}
	if ctx.Err() != nil || !IsUnavailable(timeout) {
		t.Fatal("the test's premise is wrong")
	}
	if isOutage(ctx, timeout) {
		t.Fatal("a timeout at the caller's passed deadline is an outage")
	}
	if err := callerDone(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("callerDone = %v, want DeadlineExceeded", err)
	}
	live, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if !isOutage(live, timeout) || callerDone(live) != nil {
		t.Fatal("a timeout before the caller's deadline is no outage")
	}
}

// Callers with short deadlines on a Redis that does not answer in time
// (a silent server) never mark it down for everyone, and none gets a
// degraded decision: before the fix, the connection's read deadline (the
// caller's) fired before ctx's timer, and hundreds of 800 calls degraded.
func TestShortDeadlinesDoNotMarkRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: stalledRedis(t), ContextTimeoutEnabled: true, MaxRetries: -1, PoolSize: 64})
	t.Cleanup(func() { rdb.Close() })
	cfg := userConfig(0, 5, time.Hour)
	cfg.RedisTimeout = 10 * time.Second // only the callers' deadlines end calls
	l, err := New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var degraded, wrong atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Millisecond)
				d, err := l.Allow(ctx, "u")
				cancel()
				if d.Degraded {
					degraded.Add(1)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if degraded.Load() > 0 || wrong.Load() > 0 {
		t.Fatalf("%d of 800 calls past their own deadline were degraded, %d did not wrap DeadlineExceeded", degraded.Load(), wrong.Load())
	}
	if err := l.health.check(); err != nil {
		t.Fatalf("callers' deadlines marked Redis down: %v", err)
	}
}
