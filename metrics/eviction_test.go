package metrics

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// TestObserveRedisCountsOOM: the reply of a Redis out of memory under
// noeviction, as go-redis returns it from a write, counts as kind "oom".
func TestObserveRedisCountsOOM(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	mr.SetError("OOM command not allowed when used memory > 'maxmemory'.")
	reply := rdb.Set(context.Background(), "k", "v", 0).Err()
	var re redis.Error
	if !errors.As(reply, &re) {
		t.Fatalf("SET = %v, want a Redis error reply", reply)
	}
	o, reg := newObserver(t)
	oom := fmt.Errorf("limiter: user_allow on k: %w", reply)
	o.ObserveRedis("user_allow", time.Millisecond, oom)
	compare(t, reg, `
# HELP floodgate_redis_errors_total Failed Redis round trips by script or command; kind "oom" means Redis is full and refuses writes (maxmemory under noeviction), "unavailable" that it could not be reached or timed out, "error" that it answered with an error.
# TYPE floodgate_redis_errors_total counter
floodgate_redis_errors_total{kind="oom",op="user_allow"} 1
`, "floodgate_redis_errors_total")
}

const evictionHead = `# HELP floodgate_redis_eviction_unsafe 1 when Redis's maxmemory-policy can evict Floodgate's keys (every key has a TTL, so volatile-* and allkeys-* can; set noeviction), 0 when it cannot.
# TYPE floodgate_redis_eviction_unsafe gauge
`
const evictedHead = `# HELP floodgate_redis_evicted_keys_total Keys Redis evicted since it started (INFO stats evicted_keys, summed over a Cluster's masters), Floodgate's or not.
# TYPE floodgate_redis_evicted_keys_total counter
`

// TestObserveEviction: the metrics are absent until a check succeeds,
// then follow each successful check; a failed one keeps the last values.
func TestObserveEviction(t *testing.T) {
	o, reg := newObserver(t)
	names := []string{"floodgate_redis_eviction_unsafe", "floodgate_redis_evicted_keys_total"}
	compare(t, reg, "", names...)
	o.ObserveEviction(limiter.Eviction{}, errors.New("NOPERM"))
	compare(t, reg, "", names...)
	o.ObserveEviction(limiter.Eviction{Policy: "volatile-lru", MaxMemory: 4 << 20, Unsafe: true, EvictedKeys: 36000}, nil)
	want := evictedHead + "floodgate_redis_evicted_keys_total 36000\n" + evictionHead + "floodgate_redis_eviction_unsafe 1\n"
	compare(t, reg, want, names...)
	o.ObserveEviction(limiter.Eviction{}, errors.New("timeout"))
	compare(t, reg, want, names...)
	o.ObserveEviction(limiter.Eviction{Policy: "noeviction", MaxMemory: 4 << 20, EvictedKeys: 36000}, nil)
	compare(t, reg, evictedHead+"floodgate_redis_evicted_keys_total 36000\n"+evictionHead+"floodgate_redis_eviction_unsafe 0\n", names...)
}

// TestWatchEviction: each scrape runs the function; a failure is counted
// and keeps the last values.
func TestWatchEviction(t *testing.T) {
	o, reg := newObserver(t)
	calls := 0
	fail := false
	err := o.WatchEviction(func(context.Context) (limiter.Eviction, error) {
		calls++
		if fail {
			return limiter.Eviction{}, errors.New("down")
		}
		return limiter.Eviction{Policy: "allkeys-lru", MaxMemory: 1 << 20, Unsafe: true, EvictedKeys: int64(calls)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.WatchEviction(func(context.Context) (limiter.Eviction, error) { return limiter.Eviction{}, nil }); err == nil {
		t.Error("a second WatchEviction was accepted")
	}
	if err := o.WatchEviction(nil); err == nil {
		t.Error("WatchEviction(nil) was accepted")
	}
	names := []string{"floodgate_redis_eviction_unsafe", "floodgate_redis_evicted_keys_total", "floodgate_redis_eviction_check_errors_total"}
	errsHead := `# HELP floodgate_redis_eviction_check_errors_total Scrapes at which WatchEviction's check failed or timed out; the eviction metrics kept their last values.
# TYPE floodgate_redis_eviction_check_errors_total counter
`
	compare(t, reg, errsHead+"floodgate_redis_eviction_check_errors_total 0\n"+evictedHead+"floodgate_redis_evicted_keys_total 1\n"+evictionHead+"floodgate_redis_eviction_unsafe 1\n", names...)
	compare(t, reg, errsHead+"floodgate_redis_eviction_check_errors_total 0\n"+evictedHead+"floodgate_redis_evicted_keys_total 2\n"+evictionHead+"floodgate_redis_eviction_unsafe 1\n", names...)
	fail = true
	compare(t, reg, errsHead+"floodgate_redis_eviction_check_errors_total 1\n"+evictedHead+"floodgate_redis_evicted_keys_total 2\n"+evictionHead+"floodgate_redis_eviction_unsafe 1\n", names...)
	var nilObs *Observer
	if err := nilObs.WatchEviction(func(context.Context) (limiter.Eviction, error) { return limiter.Eviction{}, nil }); err == nil {
		t.Error("WatchEviction on a nil Observer was accepted")
	}
	nilObs.ObserveEviction(limiter.Eviction{Unsafe: true}, nil) // must not panic
}
