package integration_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

func init() {
	workers["backoff-probe"] = backoffProbeWorker
	workers["backoff-do"] = backoffDoWorker
}

// backoffProbeConfig: a 20 ms delay that never grows (multiplier 1), so a
// half-open period comes every ~20 ms; a long LLMBackoffMax, so the key
// outlives the gaps before and after the workers run; and a probe lease far
// longer than any probe, so every probe ends by its own Failure.
func backoffProbeConfig(prefix string) limiter.Config {
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.LLMRetryDelay = 20 * time.Millisecond
	cfg.LLMBackoffMultiplier = 1
	cfg.LLMBackoffMax = time.Minute
	cfg.LLMProbeLease = 30 * time.Second
	cfg.RedisTimeout = 5 * time.Second
	return cfg
}

const backoffEndpoint = "http://localhost:1234"

// backoffResult is what one backoff worker process saw; each kind of
// worker fills the counters of its test.
type backoffResult struct {
	Checks, Probes, Backoff, Probing int // backoff-probe: Check's answers
	Calls, Failed, Abandoned, Denied int // backoff-do: Do's outcomes
	// Overlaps counts probes that found another probe in flight.
	Overlaps int
}

func (r *backoffResult) add(o backoffResult) {
	r.Checks += o.Checks
	r.Probes += o.Probes
	r.Backoff += o.Backoff
	r.Probing += o.Probing
	r.Calls += o.Calls
	r.Failed += o.Failed
	r.Abandoned += o.Abandoned
	r.Denied += o.Denied
	r.Overlaps += o.Overlaps
}

// openBackoffWorker opens a backoff worker's client and its Backoff on
// PREFIX; it returns when to stop (DURATION from now) and the key of the
// counter its probes mark themselves in flight on.
func openBackoffWorker() (rdb *redis.Client, b *limiter.Backoff, deadline time.Time, inFlight string, err error) {
	dur, err := time.ParseDuration(os.Getenv("DURATION"))
	if err != nil {
		return nil, nil, time.Time{}, "", err
	}
	prefix := os.Getenv("PREFIX")
	l, rdb, err := workerLimiter(64, backoffProbeConfig(prefix))
	if err != nil {
		return nil, nil, time.Time{}, "", err
	}
	if b, err = l.Backoff("llm", limiter.BackoffSettings{}); err != nil {
		rdb.Close()
		return nil, nil, time.Time{}, "", err
	}
	return rdb, b, time.Now().Add(dur), prefix + "in-flight", nil
}

// openedBackoff is the test side: a Backoff on a fresh prefix whose
// endpoint one Failure has opened, for the workers to hammer.
func openedBackoff(t *testing.T) (prefix string, b *limiter.Backoff) {
	t.Helper()
	rdb := client(t)
	prefix = uniquePrefix(t, rdb)
	l, err := limiter.New(rdb, backoffProbeConfig(prefix))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = l.Backoff("llm", limiter.BackoffSettings{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Failure(context.Background(), backoffEndpoint); err != nil {
		t.Fatal(err)
	}
	return prefix, b
}

// backoffRound is one turn of a backoff worker's goroutine: the
// process's Backoff, and the goroutine's own counters.
type backoffRound struct {
	b    *limiter.Backoff
	mine *backoffResult
	// inFlight marks a probe in flight on a counter the processes share
	// (INCR: it must read 1, else an overlap is counted) for hold, then
	// unmarks it.
	inFlight func(hold time.Duration) error
}

// backoffWorker is one bot replica: 32 goroutines call turn on an
// endpoint that keeps failing, until DURATION has passed, each counting
// into a result of its own; it returns their sum.
func backoffWorker(ctx context.Context, turn func(r *backoffRound) error) (any, error) {
	rdb, b, deadline, inFlight, err := openBackoffWorker()
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	var mu sync.Mutex
	var res backoffResult
	err = concurrently(32, func(int) error {
		r := &backoffRound{b: b, mine: &backoffResult{}}
		r.inFlight = func(hold time.Duration) error {
			n, err := rdb.Incr(ctx, inFlight).Result()
			if err != nil {
				return err
			}
			if n != 1 {
				r.mine.Overlaps++
			}
			time.Sleep(hold)
			return rdb.Decr(ctx, inFlight).Err()
		}
		defer func() {
			mu.Lock()
			res.add(*r.mine)
			mu.Unlock()
		}()
		for time.Now().Before(deadline) {
			if err := turn(r); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// backoffAcrossProcesses runs 3 worker processes of role for 2 s on an
// endpoint one Failure opened, and checks that no probe found another in
// flight. It returns each process's result, their sum, and the endpoint's
// status afterwards.
func backoffAcrossProcesses(t *testing.T, role string) ([]backoffResult, backoffResult, limiter.BackoffStatus) {
	t.Helper()
	prefix, b := openedBackoff(t)
	results := runWorkers[backoffResult](t, role, 3, map[string]string{
		"PREFIX": prefix, "DURATION": "2s",
	})
	var total backoffResult
	for i, r := range results {
		t.Logf("process %d: %+v", i, r)
		total.add(r)
	}
	st, err := b.Status(context.Background(), backoffEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("total %+v; status %+v", total, st)
	if total.Overlaps != 0 {
		t.Errorf("%d probes found another probe in flight", total.Overlaps)
	}
	return results, total, st
}

// backoffProbeWorker: each turn calls Check; a goroutine that gets the
// probe marks itself in flight, holds the probe for 2 ms as a request
// would, unmarks itself and reports Failure.
func backoffProbeWorker(ctx context.Context) (any, error) {
	return backoffWorker(ctx, func(r *backoffRound) error {
		d, err := r.b.Check(ctx, backoffEndpoint)
		if err != nil {
			return err
		}
		r.mine.Checks++
		if d.Degraded {
			return fmt.Errorf("a Check fell back to local state: %+v", d)
		}
		switch {
		case d.Probe:
			if !d.Allowed || d.Token == "" {
				return fmt.Errorf("a probe without a token, or denied: %+v", d)
			}
			r.mine.Probes++
			if err := r.inFlight(2 * time.Millisecond); err != nil {
				return err
			}
			f, err := r.b.Failure(ctx, backoffEndpoint)
			if err != nil {
				return err
			}
			if f.Degraded || f.Reason != limiter.ReasonBackoff || f.RetryAfter <= 0 || f.RetryAfter > 20*time.Millisecond {
				return fmt.Errorf("probe's Failure = %+v", f)
			}
		case d.Reason == limiter.ReasonBackoff && d.RetryAfter >= time.Millisecond:
			r.mine.Backoff++
		case d.Reason == limiter.ReasonProbing && d.RetryAfter >= time.Millisecond:
			r.mine.Probing++
		default:
			return fmt.Errorf("unexpected decision %+v: nobody reports Success", d)
		}
		return nil
	})
}

// TestBackoffOneProbePerHalfOpenPeriodAcrossProcesses: 3 OS processes × 32
// goroutines hammer Check on a failing endpoint for 2 s. Every half-open
// period must hand out exactly one probe across all processes:
//   - no probe ever finds another in flight (a shared counter reads 1);
//   - every probe's Failure escalated, i.e. arrived in a half-open period
//     of its own: the endpoint opened exactly 1 + probes times. Two probes
//     in one period would make one Failure stale (counted, not opened).
func TestBackoffOneProbePerHalfOpenPeriodAcrossProcesses(t *testing.T) {
	skipIfShort(t) // -short keeps TestBackoffScheduleRealTime
	results, total, st := backoffAcrossProcesses(t, "backoff-probe")
	for i, r := range results {
		if r.Checks == 0 {
			t.Errorf("process %d made no checks", i)
		}
	}
	if st.Opens != total.Probes+1 || st.Failures != total.Probes+1 {
		t.Errorf("endpoint opened %d times with %d failures; want exactly 1 + %d probes each", st.Opens, st.Failures, total.Probes)
	}
	if total.Probes < 10 {
		t.Errorf("only %d half-open periods in 2 s with a 20 ms delay: the test did not exercise the probe", total.Probes)
	}
	if total.Probing == 0 {
		t.Errorf("no caller was ever told another holds the probe: no contention")
	}
}

// TestBackoffScheduleRealTime runs the schedule on real Redis TIME with
// short delays: 50, 100, 200, 400, 400 ms. The delays each Failure returns
// are exact (computed in the script); the time until the probe is granted
// is checked loosely (the machine is shared).
func TestBackoffScheduleRealTime(t *testing.T) {
	rdb := client(t)
	cfg := limiter.DefaultConfig()
	cfg.LLMRetryDelay = 50 * time.Millisecond
	cfg.LLMBackoffMax = 400 * time.Millisecond
	cfg.LLMProbeLease = 5 * time.Second
	cfg.RedisTimeout = 5 * time.Second // no Degraded answers on a loaded machine
	l := newLimiter(t, rdb, cfg)
	b, err := l.Backoff("llm", limiter.BackoffSettings{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := l.Config().KeyPrefix + "{e:llm}:" + backoffEndpoint

	// opened is taken before each Failure is sent, so it precedes the Redis
	// TIME the script reads: the probe cannot come sooner than the delay
	// (less 1 ms, as TIME is truncated to ms) after it, however slow the
	// machine.
	opened := time.Now()
	f, err := b.Failure(ctx, backoffEndpoint)
	if err != nil || f != (limiter.Decision{Reason: limiter.ReasonBackoff, RetryAfter: 50 * time.Millisecond, ResetAfter: 50 * time.Millisecond}) {
		t.Fatalf("first Failure = %+v %v", f, err)
	}
	for i, want := range []time.Duration{100, 200, 400, 400} {
		want *= time.Millisecond
		delay := f.RetryAfter
		if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > delay+cfg.LLMBackoffMax {
			t.Fatalf("round %d: PTTL %v, want within (0, %v]", i, ttl, delay+cfg.LLMBackoffMax)
		}
		var d limiter.Decision
		for {
			d, err = b.Check(ctx, backoffEndpoint)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed {
				break
			}
			if d.Degraded || d.Reason != limiter.ReasonBackoff || d.RetryAfter > delay {
				t.Fatalf("round %d: while open: %+v", i, d)
			}
			if time.Since(opened) > delay+2*time.Second {
				t.Fatalf("round %d: still denied %v after a %v delay", i, time.Since(opened), delay)
			}
			time.Sleep(2 * time.Millisecond)
		}
		waited := time.Since(opened)
		if d.Token == "" {
			t.Fatalf("round %d: a probe without a token: %+v", i, d)
		}
		if d.Token = ""; d != (limiter.Decision{Allowed: true, ResetAfter: cfg.LLMProbeLease, Probe: true}) {
			t.Fatalf("round %d: the first allowed Check is not the probe: %+v", i, d)
		}
		if waited < delay-time.Millisecond {
			t.Fatalf("round %d: probe after %v, before the %v delay ran out", i, waited, delay)
		}
		t.Logf("round %d: delay %v, probe after %v", i, delay, waited)
		if d, _ := b.Check(ctx, backoffEndpoint); d.Reason != limiter.ReasonProbing {
			t.Fatalf("round %d: second caller in half-open: %+v", i, d)
		}
		opened = time.Now()
		f, err = b.Failure(ctx, backoffEndpoint)
		if err != nil || f != (limiter.Decision{Reason: limiter.ReasonBackoff, RetryAfter: want, ResetAfter: want}) {
			t.Fatalf("round %d: the probe's Failure = %+v %v, want a %v delay", i, f, err, want)
		}
	}
	if err := b.Success(ctx, backoffEndpoint); err != nil {
		t.Fatal(err)
	}
	if d, err := b.Check(ctx, backoffEndpoint); err != nil || d != (limiter.Decision{Allowed: true, Remaining: limiter.Unlimited}) {
		t.Fatalf("after Success: %+v %v", d, err)
	}
	if st, err := b.Status(ctx, backoffEndpoint); err != nil || st.State != limiter.StateClosed {
		t.Fatalf("Status after Success = %+v %v", st, err)
	}
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Fatalf("a closed endpoint kept its key")
	}
	// And an idle failed endpoint is forgotten by Redis itself.
	if _, err := b.Failure(ctx, backoffEndpoint); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Exists(ctx, key).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%s outlived its TTL (%v + %v)", key, cfg.LLMRetryDelay, cfg.LLMBackoffMax)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBackoffPickOnCluster runs Pick over several endpoints on a real
// one-node Redis Cluster: the script touches several keys, which Redis
// refuses (CROSSSLOT) unless they share a slot. They do: the hash tag is
// the Backoff's name, whatever the endpoints are called.
func TestBackoffPickOnCluster(t *testing.T) {
	skipIfShort(t) // -short: the fast tier keeps a quicker test of this area
	ctx := context.Background()
	addr, node := clusterModeNode(t)
	if err := node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(node.ClusterInfo(ctx).Val(), "cluster_state:ok") {
		if time.Now().After(deadline) {
			t.Fatal("the one-node cluster never became ok")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}})
	defer cc.Close()
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 5 * time.Second
	cfg.BackoffOnRedisError = limiter.FailClosed // an error must not pass as a fallback
	l := newLimiter(t, cc, cfg)
	b, err := l.Backoff("llm", limiter.BackoffSettings{})
	if err != nil {
		t.Fatal(err)
	}
	eps := []string{"http://localhost:1234", "https://api.openai.com", "a}b", "{x}", "http://gpu-2:8000"}
	slots := map[int64]bool{}
	for _, ep := range eps[:len(eps)-1] {
		if _, err := b.Failure(ctx, ep); err != nil {
			t.Fatal(err)
		}
		slots[node.ClusterKeySlot(ctx, l.Config().KeyPrefix+"{e:llm}:"+ep).Val()] = true
	}
	if len(slots) != 1 {
		t.Fatalf("one Backoff's keys span %d slots", len(slots))
	}
	ep, d, err := b.Pick(ctx, eps...)
	if err != nil {
		t.Fatalf("Pick on a Cluster: %v", err)
	}
	if ep != "http://gpu-2:8000" || d != (limiter.Decision{Allowed: true, Remaining: limiter.Unlimited}) {
		t.Fatalf("Pick = %q %+v, want the only closed endpoint", ep, d)
	}
	ep, d, err = b.Pick(ctx, eps[:len(eps)-1]...)
	if err != nil || ep != "" || d.Degraded || d.Reason != limiter.ReasonBackoff || d.RetryAfter <= 0 || d.RetryAfter > cfg.LLMRetryDelay {
		t.Fatalf("Pick over open endpoints = %q %+v %v", ep, d, err)
	}
}

var errLLMDown = errors.New("502 bad gateway")

// backoffDoWorker: each turn calls Do on an endpoint that never
// recovers. Every call that runs is the probe (nobody reports a success,
// so the endpoint never closes); it marks itself in flight as
// backoffProbeWorker's do, then either its caller gives up (the context is
// cancelled: Do must hand the probe back) or the endpoint fails,
// alternately in each process, the first giving up.
func backoffDoWorker(ctx context.Context) (any, error) {
	var probes atomic.Int64 // this process's: odd ones give up, even ones fail
	return backoffWorker(ctx, func(r *backoffRound) error {
		cctx, cancel := context.WithCancel(ctx)
		err := r.b.Do(cctx, backoffEndpoint, func(context.Context) error {
			r.mine.Calls++
			giveUp := probes.Add(1)%2 == 1
			if err := r.inFlight(time.Millisecond); err != nil {
				return err
			}
			if giveUp {
				cancel()
				return cctx.Err()
			}
			return errLLMDown
		})
		cancel()
		var open *limiter.BackoffOpenError
		switch {
		case errors.Is(err, context.Canceled):
			r.mine.Abandoned++
		case errors.Is(err, errLLMDown):
			r.mine.Failed++
		case errors.As(err, &open) && open.Decision.RetryAfter >= time.Millisecond && !open.Decision.Degraded:
			r.mine.Denied++
			time.Sleep(time.Millisecond) // a denied caller does other work
		default:
			return fmt.Errorf("Do = %v", err)
		}
		return nil
	})
}

// TestBackoffDoAcrossProcesses: 3 OS processes x 32 goroutines call Do on a
// failing endpoint for 2 s; half the probes' callers give up mid-call. With
// a 30 s probe lease, a probe that was not handed back would block the
// endpoint for the rest of the test. Exactly:
//   - no probe finds another in flight;
//   - every failed probe opened the endpoint (1 + failed opens and
//     failures), and no abandoned probe was counted;
//   - abandoned probes passed the probe on at once, many times.
func TestBackoffDoAcrossProcesses(t *testing.T) {
	skipIfShort(t) // -short keeps TestBackoffScheduleRealTime
	_, total, st := backoffAcrossProcesses(t, "backoff-do")
	if total.Calls != total.Failed+total.Abandoned {
		t.Errorf("%d calls ran, %d failed + %d abandoned", total.Calls, total.Failed, total.Abandoned)
	}
	if st.Opens != total.Failed+1 || st.Failures != total.Failed+1 {
		t.Errorf("endpoint opened %d times with %d failures; want exactly 1 + %d failed probes", st.Opens, st.Failures, total.Failed)
	}
	// Each process's first probe gives up: had it kept the probe, nobody
	// could have probed again within the 30 s lease.
	if total.Abandoned < 3 || total.Failed < 3 {
		t.Errorf("only %d abandoned and %d failed probes in 2 s: a cancelled probe held the endpoint", total.Abandoned, total.Failed)
	}
}
