package integration_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

const (
	slotsHoldEnv     = "FLOODGATE_TEST_SLOTS_HOLD"     // slots the holder takes
	slotsLeaseEnv    = "FLOODGATE_TEST_SLOTS_LEASE"    // their lease
	slotsSpacingEnv  = "FLOODGATE_TEST_SLOTS_SPACING"  // between arrivals (fairness)
	slotsPerProcEnv  = "FLOODGATE_TEST_SLOTS_PER_PROC" // waiters per process (fairness)
	slotsProcsEnv    = "FLOODGATE_TEST_SLOTS_PROCS"    // processes (fairness)
	slotsCounterName = "{s:llm}:test-inside"           // INCR/DECR around held sections
	slotsGrantsName  = "{s:llm}:test-grants"           // INCR at each grant (fairness)
	seedSlots        = 7                               // max_concurrent_users
	heldLine         = "held"                          // the holder's signal
)

func init() {
	workers["slots-contend"] = slotsContend
	workers["slots-hold"] = slotsHold
	workers["slots-fair"] = slotsFair
}

// contendResult is what one contending worker process saw.
type contendResult struct {
	Acquired      int
	MaxInside     int64 // highest value of the shared counter it saw
	MaxInUse      int   // highest InUse it sampled
	ReleaseErrors int
	Denied        int // TryAcquire's NoSlotErrors
	ShortWaits    int // of which with a RetryAfter under 1 ms
}

// slotsContend: 4 goroutines acquire a slot of the original bot's 7, mark the held
// section with INCR/DECR of a shared counter, hold 0-3 ms and release,
// until the end of the schedule; a fifth samples InUse.
func slotsContend(ctx context.Context) (any, error) {
	l, rdb, err := bsLimiterFromEnv(limiter.DefaultConfig())
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	s, err := l.Slots("llm", limiter.SlotsSettings{Size: seedSlots, Lease: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	counter := l.Config().KeyPrefix + slotsCounterName
	_, end, err := bsSchedule()
	if err != nil {
		return nil, err
	}
	var (
		mu   sync.Mutex
		res  contendResult
		errs []error
		wg   sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	// held marks lease's held section on the shared counter for hold, then
	// releases it and counts; false when the counter failed.
	held := func(lease *limiter.Lease, hold time.Duration) bool {
		n, err := rdb.Incr(ctx, counter).Result()
		if err != nil {
			fail(err)
			return false
		}
		time.Sleep(hold)
		rdb.Decr(ctx, counter)
		rerr := lease.Release(ctx)
		mu.Lock()
		res.Acquired++
		res.MaxInside = max(res.MaxInside, n)
		if rerr != nil {
			res.ReleaseErrors++
		}
		mu.Unlock()
		return true
	}
	wctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	for g := range 4 {
		holder := fmt.Sprintf("w%s-g%d", os.Getenv("WORKER_INDEX"), g)
		wg.Go(func() {
			for wctx.Err() == nil {
				lease, err := s.Acquire(wctx, holder)
				if err != nil {
					if wctx.Err() == nil {
						fail(err)
					}
					return
				}
				if !held(lease, time.Duration(rand.IntN(3000))*time.Microsecond) {
					return
				}
			}
		})
	}
	// A fifth holder only tries, and retries after each denial's RetryAfter
	// (at most 2 ms, to keep trying).
	wg.Go(func() {
		holder := fmt.Sprintf("w%s-try", os.Getenv("WORKER_INDEX"))
		for wctx.Err() == nil {
			lease, err := s.TryAcquire(wctx, holder)
			var nse *limiter.NoSlotError
			switch {
			case errors.As(err, &nse):
				mu.Lock()
				res.Denied++
				if nse.RetryAfter < time.Millisecond {
					res.ShortWaits++
				}
				mu.Unlock()
				time.Sleep(min(nse.RetryAfter, 2*time.Millisecond))
				continue
			case err != nil:
				if wctx.Err() == nil {
					fail(err)
				}
				return
			}
			if !held(lease, 0) {
				return
			}
		}
	})
	wg.Go(func() {
		for wctx.Err() == nil {
			n, err := s.InUse(ctx)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			res.MaxInUse = max(res.MaxInUse, n)
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return res, nil
}

// 4 processes x 4 goroutines contend for the original bot's 7 slots for 5 s (and
// one more per process only tries): never more than 7 are inside the held
// section at once, by a shared counter and by InUse; every denied try
// waits at least 1 ms.
func TestSlotsNeverOverCapacityAcrossProcesses(t *testing.T) {
	skipIfShort(t) // -short keeps TestLeaseTokenOnRealRedis
	rdb, prefix := prefixedClient(t)
	const procs = 4
	start := time.Now().Add(2 * time.Second)
	res := runWorkers[contendResult](t, "slots-contend", procs, map[string]string{
		bsPrefixEnv: prefix,
		bsStartEnv:  strconv.FormatInt(start.UnixNano(), 10),
		bsForEnv:    "5s",
	})
	var acquired, releaseErrors, maxInUse, denied, shortWaits int
	var maxInside int64
	for i, r := range res {
		t.Logf("process %d: %d acquisitions, max inside %d, max InUse %d, %d tries denied", i, r.Acquired, r.MaxInside, r.MaxInUse, r.Denied)
		denied += r.Denied
		shortWaits += r.ShortWaits
		acquired += r.Acquired
		releaseErrors += r.ReleaseErrors
		maxInside = max(maxInside, r.MaxInside)
		maxInUse = max(maxInUse, r.MaxInUse)
	}
	t.Logf("%d processes x 4 holders, 5 s: %d acquisitions, at most %d inside at once (counter), %d held (InUse), limit %d",
		procs, acquired, maxInside, maxInUse, seedSlots)
	if maxInside > seedSlots || maxInUse > seedSlots {
		t.Fatalf("%d inside / %d held at once, more than %d slots", maxInside, maxInUse, seedSlots)
	}
	if maxInside < 2 || acquired < 100 {
		t.Fatalf("no real contention: %d acquisitions, at most %d at once", acquired, maxInside)
	}
	if releaseErrors > 0 {
		t.Fatalf("%d releases failed: leases were lost while held", releaseErrors)
	}
	if denied == 0 || shortWaits > 0 {
		t.Fatalf("%d of %d denied tries had a RetryAfter under 1ms", shortWaits, denied)
	}
	if v := rdb.Get(context.Background(), prefix+slotsCounterName).Val(); v != "0" {
		t.Fatalf("counter ends at %q, want 0", v)
	}
}

// slotsHold takes FLOODGATE_TEST_SLOTS_HOLD slots, says so on stdout and
// never releases them: the test kills it with SIGKILL.
func slotsHold(ctx context.Context) (any, error) {
	l, rdb, err := bsLimiterFromEnv(limiter.DefaultConfig())
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	n, _ := strconv.Atoi(os.Getenv(slotsHoldEnv))
	lease, err := time.ParseDuration(os.Getenv(slotsLeaseEnv))
	if err != nil {
		return nil, err
	}
	s, err := l.Slots("llm", limiter.SlotsSettings{Size: seedSlots, Lease: lease})
	if err != nil {
		return nil, err
	}
	for i := range n {
		if _, err := s.TryAcquire(ctx, fmt.Sprintf("crashing-%d", i)); err != nil {
			return nil, err
		}
	}
	fmt.Println(heldLine)
	<-ctx.Done()
	return nil, ctx.Err()
}

// A replica takes every slot and is killed (SIGKILL, so nothing is
// released): the slots stay taken until the lease runs out, then are
// reclaimed.
func TestSlotsCrashedHolderReclaimed(t *testing.T) {
	skipIfShort(t) // -short keeps TestLeaseTokenOnRealRedis
	rdb, prefix := prefixedClient(t)
	const lease = 2 * time.Second
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), workerEnv+"=slots-hold", "REDIS_URL="+redisURL,
		bsPrefixEnv+"="+prefix, slotsHoldEnv+"="+strconv.Itoa(seedSlots), slotsLeaseEnv+"="+lease.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != heldLine {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("holder process did not report %q (got %q)", heldLine, sc.Text())
	}
	heldAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killedAt := time.Now()

	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.SlotsOnRedisError = limiter.FailClosed
	cfg.RedisTimeout = 2 * time.Second
	l := newLimiter(t, rdb, cfg)
	s := mustSlots(t, l, "llm", seedSlots, lease)
	ctx := context.Background()
	if n, err := s.InUse(ctx); err != nil || n != seedSlots {
		t.Fatalf("right after the kill: InUse = %d, %v; want %d", n, err, seedSlots)
	}
	if _, err := s.TryAcquire(ctx, "next"); !errors.Is(err, limiter.ErrNoSlot) {
		t.Fatalf("right after the kill: TryAcquire = %v, want ErrNoSlot", err)
	}
	// Every one of the dead replica's slots comes back, one by one as
	// their leases (taken a few ms apart) run out.
	actx, cancel := context.WithTimeout(ctx, lease+10*time.Second)
	defer cancel()
	var ours []*limiter.Lease
	for i := range seedSlots {
		got, err := s.Acquire(actx, fmt.Sprintf("next-%d", i))
		if err != nil {
			t.Fatalf("the dead holder's slot %d never came back: %v", i, err)
		}
		ours = append(ours, got)
	}
	t.Logf("slots taken %v before the kill; all %d reclaimed %v after it, %v after being taken (lease %v)",
		killedAt.Sub(heldAt).Round(time.Millisecond), seedSlots, time.Since(killedAt).Round(time.Millisecond),
		time.Since(heldAt).Round(time.Millisecond), lease)
	if n, err := s.InUse(ctx); err != nil || n != seedSlots {
		t.Fatalf("after reclaiming: InUse = %d, %v; want %d (all ours)", n, err, seedSlots)
	}
	for _, l := range ours {
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.InUse(ctx); err != nil || n != 0 {
		t.Fatalf("after releasing: InUse = %d, %v; want 0", n, err)
	}
}

// fairGrant is one waiter's scheduled index, when it called Acquire
// (unix ns; the processes share the host's clock), how late that was
// against its schedule, and its grant position.
type fairGrant struct {
	Index  int
	Called int64
	Late   time.Duration
	Grant  int64
}

// slotsFair runs FLOODGATE_TEST_SLOTS_PER_PROC waiters; waiter g of
// process w arrives at start + (g*procs + w)*spacing, so arrivals
// alternate between processes. Each records its grant position (INCR),
// holds the slot 5 ms and releases it.
func slotsFair(ctx context.Context) (any, error) {
	l, rdb, err := bsLimiterFromEnv(limiter.DefaultConfig())
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	s, err := l.Slots("llm", limiter.SlotsSettings{Size: 1, Lease: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	grants := l.Config().KeyPrefix + slotsGrantsName
	w, _ := strconv.Atoi(os.Getenv("WORKER_INDEX"))
	perProc, _ := strconv.Atoi(os.Getenv(slotsPerProcEnv))
	procs, _ := strconv.Atoi(os.Getenv(slotsProcsEnv))
	spacing, err := time.ParseDuration(os.Getenv(slotsSpacingEnv))
	if err != nil {
		return nil, err
	}
	start, _, err := bsSchedule()
	if err != nil {
		return nil, err
	}
	var (
		mu  sync.Mutex
		res []fairGrant
	)
	err = concurrently(perProc, func(g int) error {
		idx := g*procs + w
		at := start.Add(time.Duration(idx) * spacing)
		time.Sleep(time.Until(at))
		called := time.Now()
		lease, err := s.Acquire(ctx, fmt.Sprintf("waiter-%d", idx))
		if err != nil {
			return err
		}
		n, err := rdb.Incr(ctx, grants).Result()
		time.Sleep(5 * time.Millisecond)
		if rerr := lease.Release(ctx); err == nil {
			err = rerr
		}
		mu.Lock()
		res = append(res, fairGrant{idx, called.UnixNano(), called.Sub(at), n})
		mu.Unlock()
		return err
	})
	return res, err
}

// 20 callers in 4 processes call Acquire 40 ms apart (alternating
// processes) while the only slot is held; once it is freed they are
// served one by one. Grant order must follow the order of the calls (by
// the host's clock, shared by the processes): two calls less than 20 ms
// apart may reach Redis in either order, so only inversions between calls
// further apart count, and we allow at most 1 (a poll stalled by the host).
func TestSlotsAcquireFairAcrossProcesses(t *testing.T) {
	skipIfShort(t) // -short keeps TestLeaseTokenOnRealRedis
	rdb, prefix := prefixedClient(t)
	const (
		procs   = 4
		perProc = 5
		n       = procs * perProc
		spacing = 40 * time.Millisecond
		maxInv  = 1
		// A call and its first poll at Redis are a round trip apart; two
		// calls closer than this may reach Redis in either order.
		grossGap = 20 * time.Millisecond
	)
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.RedisTimeout = 2 * time.Second // the host is shared and noisy
	l := newLimiter(t, rdb, cfg)
	s := mustSlots(t, l, "llm", 1, 10*time.Second)
	ctx := context.Background()
	gate, err := s.TryAcquire(ctx, "gate")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(2 * time.Second)
	// Free the slot once everyone has queued.
	released := make(chan error, 1)
	go func() {
		time.Sleep(time.Until(start.Add(n*spacing + 500*time.Millisecond)))
		if w, err := s.Waiting(ctx); err == nil {
			t.Logf("%d callers queued when the slot is freed", w)
		}
		released <- gate.Release(ctx)
	}()
	res := runWorkers[[]fairGrant](t, "slots-fair", procs, map[string]string{
		bsPrefixEnv:     prefix,
		bsStartEnv:      strconv.FormatInt(start.UnixNano(), 10),
		bsForEnv:        "0s",
		slotsSpacingEnv: spacing.String(),
		slotsPerProcEnv: strconv.Itoa(perProc),
		slotsProcsEnv:   strconv.Itoa(procs),
	})
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	var all []fairGrant
	for _, r := range res {
		all = append(all, r...)
	}
	if len(all) != n {
		t.Fatalf("%d grants, want %d", len(all), n)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Called < all[j].Called })
	inversions, gross := 0, 0
	order := make([]int64, n)
	var late time.Duration
	for i := range all {
		order[i] = all[i].Grant
		late = max(late, all[i].Late)
		for j := i + 1; j < n; j++ {
			if all[i].Grant > all[j].Grant {
				inversions++
				if time.Duration(all[j].Called-all[i].Called) > grossGap {
					gross++
				}
			}
		}
	}
	t.Logf("grant position by arrival: %v; %d inverted pairs of %d, %d of them more than %v apart (tolerance %d); latest call %v behind schedule",
		order, inversions, n*(n-1)/2, gross, grossGap, maxInv, late.Round(time.Millisecond))
	if gross > maxInv {
		t.Fatalf("%d inverted pairs: Acquire is not first come, first served", inversions)
	}
}

// mustSlots builds a pool of size slots and lease, failing the test on an
// error.
func mustSlots(t testing.TB, l *limiter.Limiter, name string, size int, lease time.Duration) *limiter.Slots {
	t.Helper()
	s, err := l.Slots(name, limiter.SlotsSettings{Size: size, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A lease's token carries it to another process (here another Limiter
// with its own connections): Refresh and Release there act on the same
// grant in real Redis, and the granting handle then finds it lost.
func TestLeaseTokenOnRealRedis(t *testing.T) {
	rdb := client(t)
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 2 * time.Second
	granter := newLimiter(t, rdb, cfg)
	cfg.KeyPrefix = granter.Config().KeyPrefix
	other := newLimiter(t, client(t), cfg)
	ctx := context.Background()
	pool := mustSlots(t, granter, "llm", 1, 10*time.Second)
	lease, err := pool.TryAcquire(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	there, err := mustSlots(t, other, "llm", 1, 10*time.Second).Lease(lease.Token())
	if err != nil {
		t.Fatal(err)
	}
	if err := there.Refresh(ctx); err != nil {
		t.Fatalf("Refresh via token: %v", err)
	}
	if _, err := pool.TryAcquire(ctx, "bob"); !errors.Is(err, limiter.ErrNoSlot) {
		t.Fatalf("TryAcquire while the token's lease is held = %v, want ErrNoSlot", err)
	}
	if err := there.Release(ctx); err != nil {
		t.Fatalf("Release via token: %v", err)
	}
	if err := lease.Release(ctx); !errors.Is(err, limiter.ErrLeaseLost) {
		t.Fatalf("Release by the granter after the token's = %v, want ErrLeaseLost", err)
	}
	if n, err := pool.InUse(ctx); err != nil || n != 0 {
		t.Fatalf("InUse = %d, %v; want 0", n, err)
	}
}
