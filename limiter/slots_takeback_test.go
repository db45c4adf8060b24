package limiter

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/scripts/lua"
)

// lostReplyHook lets scripts run on Redis, then, while armed, replaces the
// reply of the named script with a reset connection: the grant happened,
// the caller never hears of it, and the node is marked down at once.
type lostReplyHook struct {
	script script
	armed  atomic.Bool
	lost   atomic.Int32
}

func (h *lostReplyHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *lostReplyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *lostReplyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil || !h.armed.Load() || !h.isScript(cmd) {
			return err
		}
		h.lost.Add(1)
		err = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		cmd.SetErr(err)
		return err
	}
}

// isScript reports whether cmd evaluates the script.
func (h *lostReplyHook) isScript(cmd redis.Cmder) bool {
	args := cmd.Args()
	return len(args) > 1 && (args[0] == "evalsha" && args[1] == h.script.Hash() ||
		args[0] == "eval" && args[1] == lua.Source(h.script.name+".lua"))
}

// lostReplyPool is a one-slot pool "llm" under mode whose slots_acquire
// replies hook loses while armed.
func lostReplyPool(t *testing.T, mode FailureMode) (*Limiter, *testRedis, *lostReplyHook, *Slots) {
	t.Helper()
	cfg := slotsConfig()
	cfg.SlotsOnRedisError = mode
	l, r := newTestLimiter(t, cfg)
	hook := &lostReplyHook{script: slotsAcquire}
	r.rdb.AddHook(hook)
	return l, r, hook, mustSlots(t, l, "llm", 1, time.Minute)
}

// holdersOf returns the members of the pool's holders key.
func holdersOf(t *testing.T, r *testRedis) []string {
	t.Helper()
	if !r.mr.Exists(holdersKey) {
		return nil
	}
	m, err := r.mr.ZMembers(holdersKey)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A grant whose reply was lost, by the same failure that marks the node
// down, is taken back once Redis answers again: the slot is not held for
// a whole lease.
func TestSlotsLostGrantTakenBack(t *testing.T) {
	for _, mode := range []FailureMode{FailLocal, FailOpen, FailClosed} {
		for _, op := range []string{"TryAcquire", "Acquire"} {
			t.Run(mode.String()+"/"+op, func(t *testing.T) {
				l, r, hook, s := lostReplyPool(t, mode)
				ctx := context.Background()

				hook.armed.Store(true)
				var lease *Lease
				var err error
				if op == "TryAcquire" {
					lease, err = s.TryAcquire(ctx, "lost")
				} else {
					lease, err = s.Acquire(ctx, "lost")
				}
				hook.armed.Store(false)
				if hook.lost.Load() != 1 {
					t.Fatalf("%d replies lost, want 1", hook.lost.Load())
				}
				switch mode {
				case FailClosed:
					if !errors.Is(err, ErrRedisUnavailable) {
						t.Fatalf("%s = %v, %v; want ErrRedisUnavailable", op, lease, err)
					}
				default:
					if err != nil || !lease.Degraded() {
						t.Fatalf("%s = %+v, %v; want a degraded lease", op, lease, err)
					}
				}
				if l.health.check() == nil {
					t.Fatal("the reset connection did not mark Redis down")
				}
				// The grant happened in Redis, unseen.
				if h := holdersOf(t, r); len(h) != 1 || !strings.HasSuffix(h[0], ":lost") {
					t.Fatalf("holders = %q, want the lost grant", h)
				}
				// Whatever this process does about it while Redis is marked
				// down happens now (before the fix: a goroutine whose leave
				// failed the health check at once).
				time.Sleep(20 * time.Millisecond)
				l.health.ok() // Redis answers again
				next, err := s.TryAcquire(ctx, "next")
				if err != nil || next.Degraded() {
					t.Fatalf("TryAcquire once Redis is back = %+v, %v; want the slot the lost grant held", next, err)
				}
				if h := holdersOf(t, r); len(h) != 1 || !strings.HasSuffix(h[0], ":next") {
					t.Fatalf("holders = %q, want only next", h)
				}
				if lease != nil {
					_ = lease.Release(ctx)
				}
			})
		}
	}
}

// slotsGoroutines counts goroutines running Slots code.
func slotsGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "limiter.(*Slots)")
}

// Slots starts no goroutine, not even to take back a lost grant.
func TestSlotsStartNoGoroutine(t *testing.T) {
	for _, mode := range []FailureMode{FailLocal, FailOpen, FailClosed} {
		l, _, hook, s := lostReplyPool(t, mode)
		hook.armed.Store(true)
		_, _ = s.TryAcquire(context.Background(), "a")
		l.health.ok()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, _ = s.Acquire(ctx, "b")
		cancel()
		if n := slotsGoroutines(); n != 0 {
			t.Fatalf("%v: %d goroutines run Slots code after the calls returned", mode, n)
		}
	}
}

// Owed leaves are bounded: at most maxOwed per pool, each only until Redis
// would have dropped the entry by itself; a call that fails owes them again.
func TestSlotsOwedLeavesBounded(t *testing.T) {
	var o owedLeaves
	now := time.Now()
	for i := range maxOwed + 10 {
		o.add(newMember("u"), now.Add(time.Duration(i+1)*time.Second))
	}
	o.add("expired", now.Add(-time.Second))
	got := o.take(now)
	if len(got) != maxOwed-1 || got[0].until != now.Add(12*time.Second) {
		t.Fatalf("take = %d entries from %v, want the %d newest live ones", len(got), got[0].until.Sub(now), maxOwed-1)
	}
	if again := o.take(now); len(again) != 0 {
		t.Fatalf("second take = %d entries, want none", len(again))
	}
	o.restore(got[:3])
	if again := o.take(now.Add(13 * time.Second)); len(again) != 1 || again[0].member != got[2].member {
		t.Fatalf("take after restore = %+v, want the one still live", again)
	}

	// In a pool: an owed member is sent with the next acquisition, and
	// owed again when that call fails.
	cfg := slotsConfig()
	l, r := newTestLimiter(t, cfg)
	s := mustSlots(t, l, "llm", 1, time.Minute)
	ghost := mustTry(t, s, "ghost")
	s.owe(ghost.member)
	r.mr.SetError("LOADING Redis is loading the dataset in memory")
	if _, err := s.TryAcquire(context.Background(), "x"); err != nil {
		t.Fatalf("TryAcquire while LOADING = %v, want a degraded lease", err)
	}
	r.mr.SetError("")
	l.health.ok()
	if n := len(s.owed.m); n != 2 {
		t.Fatalf("%d leaves owed after a failed call, want 2 (ghost, and x's unseen try)", n)
	}
	if h := holdersOf(t, r); len(h) != 1 || h[0] != ghost.member {
		t.Fatalf("holders = %q, want ghost's", h)
	}
	mustTry(t, s, "y")
	if h := holdersOf(t, r); len(h) != 1 || !strings.HasSuffix(h[0], ":y") {
		t.Fatalf("holders = %q, want y only: ghost's grant was owed", h)
	}
}

// stallHook holds every call of the script until its context ends, as a
// Redis that stopped answering would.
type stallHook struct{ script script }

func (h stallHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h stallHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h stallHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if (&lostReplyHook{script: h.script}).isScript(cmd) {
			<-ctx.Done()
			cmd.SetErr(ctx.Err())
			return ctx.Err()
		}
		return next(ctx, cmd)
	}
}

// A cancelled Acquire returns within leaveBudget of its context's end even
// when its leave gets no answer (not after RedisTimeout); the leave is
// owed and made with the pool's next acquisition.
func TestSlotsCancelledAcquireBounded(t *testing.T) {
	cfg := slotsConfig()
	cfg.RedisTimeout = 5 * time.Second
	l, mr := realTimeLimiter(t, cfg)
	s := mustSlots(t, l, "llm", 1, time.Minute)
	mustTry(t, s, "h")
	l.rdb.AddHook(stallHook{slotsLeave})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.Acquire(ctx, "w")
	late := time.Since(deadlineOf(ctx))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire = %v, want DeadlineExceeded", err)
	}
	if late > time.Second {
		t.Fatalf("Acquire returned %v after its deadline, want about leaveBudget (%v)", late, leaveBudget)
	}
	if n := len(s.owed.m); n != 1 {
		t.Fatalf("%d leaves owed, want w's", n)
	}
	if n, _ := s.Waiting(context.Background()); n != 1 {
		t.Fatalf("Waiting = %d before the next acquisition, want 1 (w, owed)", n)
	}
	wantNoSlot(t, s, "x")
	if n, _ := s.Waiting(context.Background()); n != 0 || mr.Exists(waitersKey) {
		t.Fatalf("Waiting = %d after the next acquisition, want 0", n)
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
