package limiter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2/server"
)

// oomReply is Redis's answer to a write when it is full under noeviction.
const oomReply = "OOM command not allowed when used memory > 'maxmemory'."

func TestCanEvict(t *testing.T) {
	for _, c := range []struct {
		policy string
		max    int64
		want   bool
	}{
		{"noeviction", 4 << 20, false},
		{"volatile-lru", 4 << 20, true},
		{"volatile-lfu", 4 << 20, true},
		{"volatile-ttl", 4 << 20, true},
		{"volatile-random", 4 << 20, true},
		{"allkeys-lru", 4 << 20, true},
		{"allkeys-lfu", 4 << 20, true},
		{"allkeys-random", 4 << 20, true},
		// Without maxmemory Redis never evicts, whatever the policy.
		{"allkeys-lru", 0, false},
	} {
		if got := canEvict(c.policy, c.max); got != c.want {
			t.Errorf("canEvict(%q, %d) = %v, want %v", c.policy, c.max, got, c.want)
		}
	}
}

func TestInfoFields(t *testing.T) {
	f := infoFields("# Memory\r\nused_memory:1024\r\nmaxmemory:4194304\r\nmaxmemory_policy:volatile-lru\r\n")
	if f["maxmemory"] != "4194304" || f["maxmemory_policy"] != "volatile-lru" || f["used_memory"] != "1024" {
		t.Fatalf("infoFields = %v", f)
	}
}

func TestEvictionWarningNamesTheFix(t *testing.T) {
	if w := (Eviction{Policy: "noeviction", MaxMemory: 1 << 20}).Warning(); w != "" {
		t.Fatalf("safe settings warn: %q", w)
	}
	w := Eviction{Policy: "volatile-lru", MaxMemory: 4 << 20, Unsafe: true, EvictedKeys: 36000, Node: "10.0.0.1:6379"}.Warning()
	for _, want := range []string{"volatile-lru", "4194304", "36000", "10.0.0.1:6379", "maxmemory-policy noeviction", "forgotten"} {
		if !strings.Contains(w, want) {
			t.Errorf("warning %q does not mention %q", w, want)
		}
	}
}

// recordingObserver records eviction checks.
type recordingObserver struct {
	mu   sync.Mutex
	got  []Eviction
	errs []error
}

func (o *recordingObserver) ObserveDecision(string, Decision)          {}
func (o *recordingObserver) ObserveRedis(string, time.Duration, error) {}
func (o *recordingObserver) ObserveEviction(e Eviction, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, e)
	o.errs = append(o.errs, err)
}

// TestEvictionRiskBeforeAndAfterCheck: EvictionRisk says when nothing was
// read yet, and then reports the check's outcome (miniredis has no INFO
// memory, so an error) to the caller and to an EvictionObserver.
func TestEvictionRiskBeforeAndAfterCheck(t *testing.T) {
	obs := &recordingObserver{}
	cfg := DefaultConfig()
	cfg.Observer = obs
	l, _ := newTestLimiter(t, cfg)
	if _, err := l.EvictionRisk(); !errors.Is(err, ErrEvictionUnchecked) {
		t.Fatalf("EvictionRisk before a check: %v, want ErrEvictionUnchecked", err)
	}
	_, err := l.CheckEviction(context.Background())
	if err == nil {
		t.Fatal("CheckEviction on miniredis (no INFO memory) succeeded")
	}
	if _, err2 := l.EvictionRisk(); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("EvictionRisk after a failed check: %v, want %v", err2, err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.errs) != 1 || obs.errs[0] == nil {
		t.Fatalf("observer got %v / %v, want the one failed check", obs.got, obs.errs)
	}
}

// TestNewChecksEvictionInTheBackground: New starts the check without
// waiting for it; it finishes within RedisTimeout.
func TestNewChecksEvictionInTheBackground(t *testing.T) {
	checkAtStart.Store(true)
	defer checkAtStart.Store(false)
	obs := &recordingObserver{}
	cfg := DefaultConfig()
	cfg.Observer = obs
	newTestLimiter(t, cfg)
	deadline := time.Now().Add(cfg.RedisTimeout + time.Second)
	for {
		obs.mu.Lock()
		n := len(obs.errs)
		obs.mu.Unlock()
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("New's eviction check reported %d times within RedisTimeout + 1 s, want 1", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutOfMemoryIsAnOutage: Redis's OOM answer (noeviction, full) follows
// each policy's FailureMode, Degraded with a nil error, one call at a time
// and batched.
func TestOutOfMemoryIsAnOutage(t *testing.T) {
	oom := errors.New(oomReply)
	if IsOutOfMemory(oom) {
		t.Fatal("IsOutOfMemory read a plain error, not Redis's reply")
	}
	for _, mode := range []FailureMode{FailLocal, FailOpen, FailClosed} {
		cfg := userConfig(10*time.Second, 20, time.Hour)
		cfg.OnRedisError = mode
		l, r := newTestLimiter(t, cfg)
		ctx := context.Background()
		mustAllow(t, l, "before")
		// Every command answers OOM, and is counted (SetError's are not).
		var seen atomic.Int64
		r.mr.Server().SetPreHook(func(c *server.Peer, cmd string, args ...string) bool {
			seen.Add(1)
			c.WriteError(oomReply)
			return true
		})
		_, err := l.rdb.Set(ctx, "floodgate:x", "1", 0).Result()
		if !IsOutOfMemory(err) || !IsUnavailable(err) {
			t.Fatalf("%v: IsOutOfMemory/IsUnavailable(%v) false", mode, err)
		}
		d, err := l.Allow(ctx, "u1")
		if err != nil || !d.Degraded {
			t.Fatalf("%v: Allow on a full Redis = %+v, %v; want a Degraded decision, nil error", mode, d, err)
		}
		if want := mode != FailClosed; d.Allowed != want {
			t.Errorf("%v: Allow on a full Redis allowed=%v, want %v", mode, d.Allowed, want)
		}
		ds, err := l.AllowMany(ctx, []string{"u2", "u3", "u4"})
		if err != nil {
			t.Fatalf("%v: AllowMany on a full Redis: %v", mode, err)
		}
		for i, d := range ds {
			if !d.Degraded {
				t.Errorf("%v: AllowMany[%d] on a full Redis = %+v, want Degraded", mode, i, d)
			}
		}
		// Three OOM answers in a row: calls skip Redis for a second.
		mustAllow(t, l, "u5")
		before := seen.Load()
		if d := mustAllow(t, l, "u6"); !d.Degraded {
			t.Fatalf("%v: Allow after 3 OOMs = %+v", mode, d)
		}
		if n := seen.Load() - before; n != 0 {
			t.Errorf("%v: %d commands reached Redis after 3 OOM answers in a row, want 0 (skipped for a second)", mode, n)
		}
		r.mr.Server().SetPreHook(nil)
	}
}
