package integration_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
	"github.com/redis/go-redis/v9"
)

// TestURLAtReplicaFailsLoudly: a Limiter whose URL names a replica (a real
// redis-server started with --replicaof) degrades only while a failover
// could still move it (5 s), then every Allow returns ErrReadOnly, which
// is not an outage; once the server is promoted (REPLICAOF NO ONE) shared
// decisions resume by themselves.
func TestURLAtReplicaFailsLoudly(t *testing.T) {
	skipIfShort(t) // waits out the 5 s failover window
	ctx := context.Background()
	master := startRedis(t)
	replica := startRedis(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port))

	cfg := limiter.DefaultConfig()
	cfg.RedisURL = "redis://" + replica.Addr
	cfg.LocalCacheSize = 0
	l := urlLimiter(t, cfg)

	start := time.Now()
	d, err := l.Allow(ctx, "alice")
	if err != nil || !d.Degraded {
		t.Fatalf("first call at a replica: %+v, %v; want a degraded decision (a failover may be under way)", d, err)
	}
	var loud error
	// A new user each time: the per-user fallback answers a user it
	// admitted itself without asking Redis until its cooldown ends, and
	// only calls that reach Redis can see READONLY.
	for i, deadline := 0, start.Add(15*time.Second); time.Now().Before(deadline); i++ {
		time.Sleep(50 * time.Millisecond)
		d, err := l.Allow(ctx, fmt.Sprintf("viewer%d", i))
		if err != nil {
			loud = err
			break
		}
		if !d.Degraded {
			t.Fatalf("a replica admitted a shared decision: %+v", d)
		}
	}
	took := time.Since(start)
	if !errors.Is(loud, limiter.ErrReadOnly) || limiter.IsUnavailable(loud) {
		t.Fatalf("after %v at a replica: %v; want ErrReadOnly, not an outage", took, loud)
	}
	if took < 4*time.Second || took > 8*time.Second {
		t.Errorf("loud after %v, want about 5 s", took)
	}
	t.Logf("loud after %v: %v", took.Round(time.Millisecond), loud)
	if _, err := l.AllowMany(ctx, []string{"bob", "carol"}); !errors.Is(err, limiter.ErrReadOnly) {
		t.Fatalf("AllowMany at a replica: %v, want ErrReadOnly", err)
	}

	// A failover promotes it: no restart, no new Limiter.
	admin := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Allow(ctx, "dave"); err != nil || d.Degraded || !d.Allowed {
		t.Fatalf("after promotion: %+v, %v; want a shared decision", d, err)
	}
}
