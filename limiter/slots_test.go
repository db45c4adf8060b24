package limiter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	holdersKey = "floodgate:{s:llm}:h"
	waitersKey = "floodgate:{s:llm}:w"
	aliveKey   = "floodgate:{s:llm}:e"
)

// slotStep is one operation at an instant (from epoch): "try" takes a
// lease for holder into leases[i]; "refresh" and "release" act on
// leases[i]; "inuse" expects n slots held. want is the expected error.
type slotStep struct {
	at     time.Duration
	op     string
	i      int
	holder string
	want   error
	n      int
}

// mustSlots builds a pool of size slots and lease, failing the test on an
// error.
func mustSlots(t testing.TB, l *Limiter, name string, size int, lease time.Duration) *Slots {
	t.Helper()
	s, err := l.Slots(name, SlotsSettings{Size: size, Lease: lease})
	return must(t, s, err, "Slots(%q)", name)
}

func runSlotSteps(t *testing.T, s *Slots, r *testRedis, steps []slotStep) {
	t.Helper()
	ctx := context.Background()
	leases := map[int]*Lease{}
	for k, st := range steps {
		r.at(st.at)
		var err error
		switch st.op {
		case "try":
			var l *Lease
			l, err = s.TryAcquire(ctx, st.holder)
			if err == nil {
				if l.Holder() != st.holder || l.Degraded() {
					t.Fatalf("step %d: lease %+v", k, l)
				}
				leases[st.i] = l
			}
		case "refresh":
			err = leases[st.i].Refresh(ctx)
		case "release":
			err = leases[st.i].Release(ctx)
		case "inuse":
			n, ierr := s.InUse(ctx)
			if ierr != nil || n != st.n {
				t.Fatalf("step %d at %v: InUse = %d, %v; want %d", k, st.at, n, ierr, st.n)
			}
			continue
		}
		if !errors.Is(err, st.want) || (st.want == nil && err != nil) {
			t.Fatalf("step %d at %v: %s %d (%s) = %v, want %v", k, st.at, st.op, st.i, st.holder, err, st.want)
		}
	}
}

func slotsConfig() Config {
	cfg := DefaultConfig()
	cfg.LocalCacheSize = 0
	return cfg
}

// Fill to size, ErrNoSlot, leases expiring exactly at grant+lease,
// Refresh extending one, expired leases lost for good, holder names
// reused with fresh leases.
func TestSlotsFillExpireRefresh(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	s := mustSlots(t, l, "llm", 3, 10*time.Second)
	sec := time.Second
	runSlotSteps(t, s, r, []slotStep{
		{at: 0, op: "try", i: 0, holder: "alice"},
		{at: 0, op: "try", i: 1, holder: "bob"},
		{at: 0, op: "try", i: 2, holder: "carol"},
		{at: 0, op: "try", i: 9, holder: "dave", want: ErrNoSlot},
		{at: 0, op: "inuse", n: 3},
		{at: 5 * sec, op: "refresh", i: 0}, // alice now until 15 s
		{at: 10*sec - msec, op: "try", i: 9, holder: "dave", want: ErrNoSlot},
		{at: 10*sec - msec, op: "inuse", n: 3},
		// bob's and carol's leases end at 10 s sharp.
		{at: 10 * sec, op: "inuse", n: 1},
		{at: 10 * sec, op: "try", i: 3, holder: "dave"},
		{at: 10 * sec, op: "try", i: 4, holder: "erin"},
		{at: 10 * sec, op: "try", i: 9, holder: "frank", want: ErrNoSlot},
		// bob's slot went to dave: bob's lease can neither come back nor
		// free dave's slot.
		{at: 10 * sec, op: "refresh", i: 1, want: ErrLeaseLost},
		{at: 10 * sec, op: "release", i: 2, want: ErrLeaseLost},
		{at: 10 * sec, op: "inuse", n: 3},
		{at: 12 * sec, op: "release", i: 3},
		{at: 12 * sec, op: "release", i: 3, want: ErrLeaseLost},
		{at: 12 * sec, op: "refresh", i: 3, want: ErrLeaseLost},
		{at: 12 * sec, op: "inuse", n: 2},
		{at: 12 * sec, op: "try", i: 5, holder: "bob"}, // a name reused
		{at: 12 * sec, op: "try", i: 6, holder: "bob", want: ErrNoSlot},
		{at: 15*sec - msec, op: "refresh", i: 0}, // alice until 25 s - 1 ms
		{at: 22 * sec, op: "inuse", n: 1},
		{at: 25*sec - msec, op: "inuse", n: 0},
		{at: 25*sec - msec, op: "refresh", i: 0, want: ErrLeaseLost},
	})
}

// A holder whose lease expired and who got a new one: the old lease is
// lost, and using it never touches the new one.
func TestSlotsOldLeaseOfSameHolder(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	s := mustSlots(t, l, "llm", 1, time.Second)
	runSlotSteps(t, s, r, []slotStep{
		{at: 0, op: "try", i: 0, holder: "alice"},
		{at: time.Second, op: "try", i: 1, holder: "alice"},
		{at: time.Second, op: "refresh", i: 0, want: ErrLeaseLost},
		{at: time.Second, op: "release", i: 0, want: ErrLeaseLost},
		{at: time.Second, op: "inuse", n: 1},
		{at: time.Second, op: "try", i: 9, holder: "bob", want: ErrNoSlot},
		{at: 1500 * msec, op: "refresh", i: 1},
		{at: 2400 * msec, op: "inuse", n: 1},
		{at: 2400 * msec, op: "release", i: 1},
		{at: 2400 * msec, op: "inuse", n: 0},
	})
}

// A lease that expired but is still in the set (nobody acquired since,
// and another lease keeps the key alive) is lost all the same.
func TestSlotsExpiredNotYetPruned(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	s := mustSlots(t, l, "llm", 2, time.Second)
	runSlotSteps(t, s, r, []slotStep{
		{at: 0, op: "try", i: 0, holder: "alice"},
		{at: 500 * msec, op: "try", i: 1, holder: "bob"},
		{at: 1000 * msec, op: "refresh", i: 0, want: ErrLeaseLost},
		{at: 1000 * msec, op: "inuse", n: 1},
		{at: 1200 * msec, op: "try", i: 2, holder: "carol"},
		{at: 1500 * msec, op: "release", i: 1, want: ErrLeaseLost},
		{at: 1500 * msec, op: "inuse", n: 1},
		{at: 1500 * msec, op: "release", i: 2},
	})
}

// waiter is one Acquire, polled by hand.
type waiter struct {
	member  string
	arrival int64
}

func (w *waiter) poll(t *testing.T, s *Slots) acquireReply {
	t.Helper()
	r, err := s.acquireOnce(context.Background(), w.member, true, w.arrival)
	if err != nil {
		t.Fatalf("poll %s: %v", w.member, err)
	}
	if !r.granted {
		w.arrival = r.arrival
	}
	return r
}

func (w *waiter) lease(s *Slots) *Lease {
	return &Lease{s: s, member: w.member, holder: strings.SplitN(w.member, ":", 2)[1]}
}

func newWaiter(holder string) *waiter { return &waiter{member: newMember(holder)} }

func mustTry(t *testing.T, s *Slots, holder string) *Lease {
	t.Helper()
	l, err := s.TryAcquire(context.Background(), holder)
	if err != nil {
		t.Fatalf("TryAcquire(%s): %v", holder, err)
	}
	return l
}

func wantNoSlot(t *testing.T, s *Slots, holder string) {
	t.Helper()
	if _, err := s.TryAcquire(context.Background(), holder); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("TryAcquire(%s) = %v, want ErrNoSlot", holder, err)
	}
}

func mustRelease(t *testing.T, l *Lease) {
	t.Helper()
	if err := l.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// pollStep is one waiter's poll and what it must get.
type pollStep struct {
	w        *waiter
	granted  bool
	position int
}

func runPolls(t *testing.T, s *Slots, steps []pollStep) {
	t.Helper()
	for i, st := range steps {
		got := st.w.poll(t, s)
		if got.granted != st.granted || (!st.granted && got.position != st.position) {
			t.Fatalf("poll %d (%s): %+v, want granted=%v position=%d", i, st.w.member[27:], got, st.granted, st.position)
		}
	}
}

// Waiters are served in arrival order whatever order they poll in, and
// TryAcquire never takes a slot a waiter is owed.
func TestSlotsFIFO(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	s := mustSlots(t, l, "llm", 1, 10*time.Second)
	holder := mustTry(t, s, "h")
	a, b, c := newWaiter("a"), newWaiter("b"), newWaiter("c")
	r.at(1 * msec)
	runPolls(t, s, []pollStep{{a, false, 0}})
	r.at(2 * msec)
	runPolls(t, s, []pollStep{{b, false, 1}})
	r.at(3 * msec)
	runPolls(t, s, []pollStep{{c, false, 2}})
	if n, _ := s.Waiting(context.Background()); n != 3 {
		t.Fatalf("Waiting = %d, want 3", n)
	}
	if held, waiting, err := s.Usage(context.Background()); held != 1 || waiting != 3 || err != nil {
		t.Fatalf("Usage = %d held, %d waiting, %v; want 1, 3", held, waiting, err)
	}
	mustRelease(t, holder)
	// The free slot is a's, though c and b poll first.
	wantNoSlot(t, s, "x")
	runPolls(t, s, []pollStep{{c, false, 2}, {b, false, 1}, {a, true, 0}})
	runPolls(t, s, []pollStep{{c, false, 1}, {b, false, 0}})
	mustRelease(t, a.lease(s))
	runPolls(t, s, []pollStep{{c, false, 1}, {b, true, 0}, {c, false, 0}})
	mustRelease(t, b.lease(s))
	wantNoSlot(t, s, "x")
	runPolls(t, s, []pollStep{{c, true, 0}})
	mustRelease(t, c.lease(s))
	// The queue is empty again: TryAcquire may take the slot.
	mustRelease(t, mustTry(t, s, "x"))
	if r.mr.Exists(waitersKey) || r.mr.Exists(aliveKey) {
		t.Fatal("an empty queue left keys behind")
	}
}

// With several free slots, a waiter is served as soon as every waiter
// ahead of it can be served too; TryAcquire only takes what is left over.
func TestSlotsFIFOSeveralFree(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	s := mustSlots(t, l, "llm", 3, 10*time.Second)
	held := []*Lease{mustTry(t, s, "h1"), mustTry(t, s, "h2"), mustTry(t, s, "h3")}
	a, b, c := newWaiter("a"), newWaiter("b"), newWaiter("c")
	for i, w := range []*waiter{a, b, c} {
		r.at(time.Duration(i+1) * msec)
		runPolls(t, s, []pollStep{{w, false, i}})
	}
	mustRelease(t, held[0])
	mustRelease(t, held[1])
	wantNoSlot(t, s, "x")                                   // 2 free, 3 waiting
	runPolls(t, s, []pollStep{{c, false, 2}, {b, true, 0}}) // b is within the 2 free
	runPolls(t, s, []pollStep{{c, false, 1}, {a, true, 0}}) // then a
	runPolls(t, s, []pollStep{{c, false, 0}})               // c waits for h3
	mustRelease(t, held[2])                                 // 1 free, c waiting
	wantNoSlot(t, s, "x")                                   // still c's
	runPolls(t, s, []pollStep{{c, true, 0}})                // pool full
	mustRelease(t, a.lease(s))                              // 1 free, nobody waiting
	mustTry(t, s, "x")                                      // so TryAcquire takes it
	if n, _ := s.InUse(context.Background()); n != 3 {
		t.Fatalf("InUse = %d, want 3", n)
	}
}

// A waiter that stops polling (a crashed replica) is dropped once its
// heartbeat lapses, and the one behind it is served; if it comes back it
// rejoins at its original place.
func TestSlotsAbandonedWaiterRemoved(t *testing.T) {
	cfg := slotsConfig()
	cfg.RedisTimeout = 250 * time.Millisecond
	l, r := newTestLimiter(t, cfg)
	s := mustSlots(t, l, "llm", 1, time.Minute)
	wttl := s.waiterTTL()
	if wttl != 2*time.Second { // 4 x (50 ms poll cap + 250 ms) is under the 2 s floor
		t.Fatalf("waiterTTL = %v, want the 2s floor", wttl)
	}
	h := mustTry(t, s, "h")
	a, b := newWaiter("a"), newWaiter("b")
	runPolls(t, s, []pollStep{{a, false, 0}})
	r.at(1 * msec)
	runPolls(t, s, []pollStep{{b, false, 1}})
	mustRelease(t, h)
	r.at(wttl / 2)
	runPolls(t, s, []pollStep{{b, false, 1}}) // a is still alive
	r.at(wttl - msec)
	runPolls(t, s, []pollStep{{b, false, 1}})
	r.at(wttl) // a's heartbeat lapses: a is dropped, b is first
	if n, _ := s.Waiting(context.Background()); n != 1 {
		t.Fatalf("Waiting = %d, want 1 (b)", n)
	}
	runPolls(t, s, []pollStep{{b, true, 0}})
	// A later arrival queues behind b's slot; then a comes back and goes
	// ahead of it, at its original arrival.
	c := newWaiter("c")
	r.at(wttl + msec)
	runPolls(t, s, []pollStep{{c, false, 0}, {a, false, 0}, {c, false, 1}})
	mustRelease(t, b.lease(s))
	runPolls(t, s, []pollStep{{c, false, 1}, {a, true, 0}})
}

// A cancelled Acquire leaves the queue at once; it polled with backoff,
// not in a busy loop.
func TestSlotsAcquireCancelledLeavesQueue(t *testing.T) {
	cfg := slotsConfig()
	obs := &recordObserver{}
	cfg.Observer = obs
	l, mr := realTimeLimiter(t, cfg)
	s := mustSlots(t, l, "llm", 1, time.Minute)
	mustTry(t, s, "h")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := s.Acquire(ctx, "w")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire on a full pool = %v, want DeadlineExceeded", err)
	}
	if mr.Exists(waitersKey) || mr.Exists(aliveKey) {
		t.Fatal("the cancelled waiter is still queued")
	}
	if n, _ := s.InUse(context.Background()); n != 1 {
		t.Fatalf("InUse = %d, want 1", n)
	}
	// 200 ms at 1, 2, 4, ... 50 ms is about 9 polls; a spinning loop
	// would make thousands.
	if n := obs.roundTrips(); n > 40 {
		t.Fatalf("Acquire made %d round trips in 200 ms", n)
	}
}

// hookObserver calls fn after each Redis round trip.
type hookObserver struct {
	fn func(op string)
}

func (o hookObserver) ObserveDecision(string, Decision)                 {}
func (o hookObserver) ObserveRedis(op string, _ time.Duration, _ error) { o.fn(op) }

// Acquire waits on a full pool and gets the slot once it is released.
func TestSlotsAcquireWaitsForRelease(t *testing.T) {
	cfg := slotsConfig()
	polled := make(chan struct{}, 100)
	cfg.Observer = hookObserver{func(op string) {
		if op == "slots_acquire" {
			select {
			case polled <- struct{}{}:
			default: // never block Acquire
			}
		}
	}}
	l, _ := realTimeLimiter(t, cfg)
	s := mustSlots(t, l, "llm", 1, time.Minute)
	h := mustTry(t, s, "h")
	<-polled
	got := make(chan error, 1)
	var lease *Lease
	go func() {
		var err error
		lease, err = s.Acquire(context.Background(), "w")
		got <- err
	}()
	<-polled // w is queued
	mustRelease(t, h)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if lease.Holder() != "w" || lease.Degraded() {
		t.Fatalf("lease = %+v", lease)
	}
	if n, _ := s.InUse(context.Background()); n != 1 {
		t.Fatalf("InUse = %d, want 1", n)
	}
	if n, _ := s.Waiting(context.Background()); n != 0 {
		t.Fatalf("Waiting = %d, want 0", n)
	}
	mustRelease(t, lease)
}

// A poll whose reply was lost is repeated: the same member gets the same
// slot back, not a second one.
func TestSlotsRepeatedPollIsIdempotent(t *testing.T) {
	l, _ := newTestLimiter(t, slotsConfig())
	s := mustSlots(t, l, "llm", 2, time.Minute)
	w := newWaiter("w")
	runPolls(t, s, []pollStep{{w, true, 0}, {w, true, 0}})
	if n, _ := s.InUse(context.Background()); n != 1 {
		t.Fatalf("InUse = %d, want 1", n)
	}
	// And leaving (a cancelled Acquire) also drops a grant it never saw.
	s.leave(context.Background(), w.member)
	if n, _ := s.InUse(context.Background()); n != 0 {
		t.Fatalf("InUse after leave = %d, want 0", n)
	}
}

// Every key's TTL is when its last entry expires, and idle pools leave
// nothing behind.
func TestSlotsKeyTTLs(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	s := mustSlots(t, l, "llm", 2, 10*time.Second)
	ttl := func(key string, want time.Duration) {
		t.Helper()
		if got := r.mr.TTL(key); got != want {
			t.Fatalf("TTL(%s) at %v = %v, want %v", key, r.now.Sub(epoch), got, want)
		}
	}
	a := mustTry(t, s, "a")
	ttl(holdersKey, 10*time.Second)
	r.at(4 * time.Second)
	mustTry(t, s, "b")
	ttl(holdersKey, 10*time.Second)
	r.at(6 * time.Second)
	if err := a.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ttl(holdersKey, 10*time.Second)
	w := newWaiter("w")
	runPolls(t, s, []pollStep{{w, false, 0}})
	ttl(waitersKey, s.waiterTTL())
	ttl(aliveKey, s.waiterTTL())
	r.at(6*time.Second + s.waiterTTL())
	if r.mr.Exists(waitersKey) || r.mr.Exists(aliveKey) {
		t.Fatal("queue keys outlived their last waiter")
	}
	r.at(16 * time.Second)
	if r.mr.Exists(holdersKey) {
		t.Fatal("holders key outlived its last lease")
	}
}

// Holder names with key-like bytes are fine: they are members, not keys
// (bad holders are in TestBadInputAtEveryEntryPoint).
func TestSlotsHolderWithBraces(t *testing.T) {
	l, _ := newTestLimiter(t, slotsConfig())
	mustRelease(t, mustTry(t, mustSlots(t, l, "llm", 7, time.Second), "a}{:b"))
}

func TestSlotsRedisDown(t *testing.T) {
	ctx := context.Background()
	cfg := slotsConfig()

	// FailLocal: an in-process pool of the same size, shared by all Slots
	// of the name, with the same FIFO rules.
	l := downLimiter(t, cfg)
	a, err := mustSlots(t, l, "llm", 2, time.Minute).TryAcquire(ctx, "a")
	if err != nil || !a.Degraded() {
		t.Fatalf("FailLocal TryAcquire = %+v, %v", a, err)
	}
	b := mustTry(t, mustSlots(t, l, "llm", 2, time.Minute), "b")
	wantNoSlot(t, mustSlots(t, l, "llm", 2, time.Minute), "c")
	if err := a.Refresh(ctx); err != nil {
		t.Fatalf("local Refresh: %v", err)
	}
	var wg sync.WaitGroup
	var got *Lease
	var gotErr error
	c := mustSlots(t, l, "llm", 2, time.Minute)
	wg.Go(func() { got, gotErr = c.Acquire(ctx, "c") })
	mustRelease(t, a)
	wg.Wait()
	if gotErr != nil || !got.Degraded() || got.Holder() != "c" {
		t.Fatalf("FailLocal Acquire = %+v, %v", got, gotErr)
	}
	if err := a.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("second local Release = %v, want ErrLeaseLost", err)
	}
	if err := a.Refresh(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("local Refresh after Release = %v, want ErrLeaseLost", err)
	}
	mustRelease(t, b)
	mustRelease(t, got)
	// A cancelled local wait leaves the local queue.
	p := l.fallback.slots("llm")
	mustTry(t, mustSlots(t, l, "llm", 1, time.Minute), "x")
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := mustSlots(t, l, "llm", 1, time.Minute).Acquire(cctx, "y"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("local Acquire on a full pool = %v", err)
	}
	p.mu.Lock()
	queued := len(p.queue)
	p.mu.Unlock()
	if queued != 0 {
		t.Fatalf("%d waiters left in the local queue", queued)
	}

	// FailOpen: leases that hold nothing.
	cfg.SlotsOnRedisError = FailOpen
	l = downLimiter(t, cfg)
	for _, h := range []string{"a", "b", "c"} {
		lease, err := mustSlots(t, l, "llm", 1, time.Minute).Acquire(ctx, h)
		if err != nil || !lease.Degraded() {
			t.Fatalf("FailOpen Acquire = %+v, %v", lease, err)
		}
		if lease.Refresh(ctx) != nil || lease.Release(ctx) != nil {
			t.Fatal("FailOpen lease Refresh/Release failed")
		}
	}

	// FailClosed: an error wrapping ErrRedisUnavailable.
	cfg.SlotsOnRedisError = FailClosed
	l = downLimiter(t, cfg)
	if _, err := mustSlots(t, l, "llm", 7, time.Minute).TryAcquire(ctx, "a"); !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("FailClosed TryAcquire = %v", err)
	}
	if _, err := mustSlots(t, l, "llm", 7, time.Minute).Acquire(ctx, "a"); !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("FailClosed Acquire = %v", err)
	}
}

// A Redis lease whose Redis goes away: Refresh and Release say Redis is
// unavailable, not that the lease is lost.
func TestSlotsLeaseWhenRedisGoes(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	lease := mustTry(t, mustSlots(t, l, "llm", 7, time.Minute), "a")
	r.mr.Close()
	ctx := context.Background()
	if err := lease.Refresh(ctx); !errors.Is(err, ErrRedisUnavailable) || errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Refresh without Redis = %v", err)
	}
	if err := lease.Release(ctx); !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("Release without Redis = %v", err)
	}
}

// Zero settings take Config.MaxConcurrentUsers and Config.SlotLease.
func TestSlotsSettingsDefaults(t *testing.T) {
	cfg := slotsConfig()
	cfg.MaxConcurrentUsers = 2
	cfg.SlotLease = 3 * time.Second
	l, r := newTestLimiter(t, cfg)
	s, err := l.Slots("llm", SlotsSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != 2 || s.lease != 3*time.Second || s.Name() != "llm" {
		t.Fatalf("Slots(llm, zero) = %s size %d lease %v, want size 2 lease 3s", s.Name(), s.Size(), s.lease)
	}
	mustTry(t, s, "a")
	mustTry(t, s, "b")
	wantNoSlot(t, s, "c")
	if ttl := r.mr.TTL(holdersKey); ttl != 3*time.Second {
		t.Fatalf("holders TTL = %v, want the configured lease 3s", ttl)
	}
	if s, err := l.Slots("other", SlotsSettings{Lease: time.Minute}); err != nil || s.Size() != 2 || s.lease != time.Minute {
		t.Fatalf("Slots(other, lease only) = %+v, %v", s, err)
	}
	if s, err := l.Slots("third", SlotsSettings{Size: 5}); err != nil || s.Size() != 5 || s.lease != 3*time.Second {
		t.Fatalf("Slots(third, size only) = %+v, %v", s, err)
	}

	cfg.MaxConcurrentUsers = 0
	l, _ = newTestLimiter(t, cfg)
	if s, err := l.Slots("llm", SlotsSettings{}); s != nil || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "MaxConcurrentUsers") {
		t.Fatalf("Slots with no size anywhere = %v, %v; want ErrInvalidArgument naming MaxConcurrentUsers", s, err)
	}
}

// A pool key that is not a sorted set is ErrForeignKey from every call, as
// from every policy: never an outage (no fallback), and the key is left
// as it was.
func TestSlotsForeignKey(t *testing.T) {
	ctx := context.Background()
	for _, key := range []string{holdersKey, waitersKey, aliveKey} {
		cfg := slotsConfig()
		cfg.SlotsOnRedisError = FailOpen
		l, r := newTestLimiter(t, cfg)
		s := mustSlots(t, l, "llm", 2, time.Minute)
		if key != holdersKey {
			mustTry(t, s, "a")
		}
		r.mr.Set(key, "not ours")
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, ErrForeignKey) || IsUnavailable(err) || !strings.HasPrefix(err.Error(), "limiter: ") {
				t.Errorf("%s with %s a string = %v, want ErrForeignKey", op, key, err)
			}
		}
		got, err := s.TryAcquire(ctx, "b")
		check("TryAcquire", err)
		if got != nil {
			t.Errorf("TryAcquire with a foreign %s granted %+v", key, got)
		}
		_, err = s.Acquire(ctx, "b")
		check("Acquire", err)
		if key != waitersKey {
			_, err = s.InUse(ctx)
			check("InUse", err)
		}
		if key == holdersKey {
			ghost := &Lease{s: s, holder: "a", member: newMember("a")}
			check("Refresh", ghost.Refresh(ctx))
			check("Release", ghost.Release(ctx))
		}
		if v, _ := r.mr.Get(key); v != "not ours" {
			t.Errorf("foreign %s changed to %q", key, v)
		}
	}
}
