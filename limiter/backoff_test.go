package limiter

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	epLocal  = "http://localhost:1234"
	epOpenAI = "https://api.openai.com"
	bsec     = time.Second
	bms      = time.Millisecond
)

// backoffConfig is the default backoff (5 s, x2, 300 s), no jitter, a 30 s
// probe lease, and a Redis timeout long enough that a loaded test machine
// never turns a call into a (Degraded) FailLocal answer.
func backoffConfig() Config {
	cfg := DefaultConfig()
	cfg.LocalCacheSize = 0
	cfg.RedisTimeout = 10 * time.Second
	return cfg
}

func newTestBackoff(t *testing.T, cfg Config) (*Backoff, *testRedis) {
	t.Helper()
	l, r := newTestLimiter(t, cfg)
	return mustBackoff(t, l, "llm"), r
}

// mustBackoff is l.Backoff(name, BackoffSettings{}), failing the test on an
// error, with every probe token pinned to testToken.
func mustBackoff(t testing.TB, l *Limiter, name string) *Backoff {
	t.Helper()
	b, err := l.Backoff(name, BackoffSettings{})
	b = must(t, b, err, "Backoff(%q)", name)
	b.token = func() string { return testToken }
	return b
}

const testToken = "00000000000000a1"

// backoffReplicas is n replicas' Backoffs "llm" (mustBackoff) on r, each
// with its own Limiter.
func backoffReplicas(t *testing.T, r *testRedis, n int) []*Backoff {
	t.Helper()
	bs := make([]*Backoff, n)
	for i := range bs {
		l, err := New(r.rdb, backoffConfig())
		if err != nil {
			t.Fatal(err)
		}
		bs[i] = mustBackoff(t, l, "llm")
	}
	return bs
}

// probeDueReplicas is n backoffReplicas on a new testRedis whose epOpenAI
// failed at epoch: at 5 s, where the clock is left, its probe is due.
func probeDueReplicas(t *testing.T, n int) ([]*Backoff, *testRedis) {
	t.Helper()
	r := newTestRedis(t)
	bs := backoffReplicas(t, r, n)
	if _, err := bs[0].Failure(context.Background(), epOpenAI); err != nil {
		t.Fatal(err)
	}
	r.at(5 * bsec)
	return bs, r
}

// Decisions Backoff gives, exactly.
var bClosed = Decision{Allowed: true, Remaining: Unlimited}

func bProbe(lease time.Duration) Decision {
	return Decision{Allowed: true, ResetAfter: lease, Probe: true, Token: testToken}
}
func bOpen(w time.Duration) Decision {
	return Decision{Reason: ReasonBackoff, RetryAfter: w, ResetAfter: w}
}
func bProbing(w time.Duration) Decision {
	return Decision{Reason: ReasonProbing, RetryAfter: w, ResetAfter: w}
}

// bstep is one report or check at an instant (from epoch) and its exact
// decision. op: 'c' Check, 'f' Failure, 's' Success (want ignored).
type bstep struct {
	at   time.Duration
	op   byte
	want Decision
}

func runBackoff(t *testing.T, b *Backoff, r *testRedis, endpoint string, steps []bstep) {
	t.Helper()
	ctx := context.Background()
	for i, s := range steps {
		r.at(s.at)
		var got Decision
		var err error
		switch s.op {
		case 'c':
			got, err = b.Check(ctx, endpoint)
		case 'f':
			got, err = b.Failure(ctx, endpoint)
		case 's':
			err = b.Success(ctx, endpoint)
			got = s.want
		}
		if err != nil {
			t.Fatalf("step %d (%c at %v): %v", i, s.op, s.at, err)
		}
		if s.op != 's' && !got.Allowed && got.RetryAfter < bms {
			t.Fatalf("step %d (%c at %v): denied with RetryAfter %v, want at least 1ms", i, s.op, s.at, got.RetryAfter)
		}
		if got != s.want {
			t.Fatalf("step %d (%c at %v):\n got %+v\nwant %+v", i, s.op, s.at, got, s.want)
		}
	}
}

// wantStatus asserts endpoint's status at this point (when).
func wantStatus(t *testing.T, b *Backoff, endpoint, when string, want BackoffStatus) {
	t.Helper()
	if s := mustStatus(t, b, endpoint); s != want {
		t.Fatalf("%s:\n got %+v\nwant %+v", when, s, want)
	}
}

func mustStatus(t *testing.T, b *Backoff, endpoint string) BackoffStatus {
	t.Helper()
	s, err := b.Status(context.Background(), endpoint)
	return must(t, s, err, "Status(%q)", endpoint)
}

func TestBackoffDefaultSchedule(t *testing.T) {
	b, r := newTestBackoff(t, backoffConfig())
	steps := []bstep{
		{0, 'c', bClosed},
		{0, 'f', bOpen(5 * bsec)},
		{0, 'c', bOpen(5 * bsec)},
		{4999 * bms, 'c', bOpen(1 * bms)},
	}
	// Each probe fails: 5, 10, 20, 40, 80, 160, then capped at 300, 300.
	at := 5 * bsec
	for _, d := range []time.Duration{10, 20, 40, 80, 160, 300, 300} {
		steps = append(steps,
			bstep{at, 'c', bProbe(30 * bsec)},
			bstep{at, 'c', bProbing(30 * bsec)},
			bstep{at + bsec, 'c', bProbing(29 * bsec)},
			bstep{at + bsec, 'f', bOpen(d * bsec)},
			bstep{at + bsec, 'c', bOpen(d * bsec)},
		)
		at += bsec + d*bsec
	}
	runBackoff(t, b, r, epLocal, steps)
	wantStatus(t, b, epLocal, "status after the backoffSched", BackoffStatus{State: StateOpen, Opens: 8, Failures: 8, Delay: 300 * bsec, RetryAfter: 300 * bsec})

	// The probe succeeds: closed everywhere, no key, and the delay starts
	// again from 5 s.
	runBackoff(t, b, r, epLocal, []bstep{
		{at, 'c', bProbe(30 * bsec)},
		{at + 2*bsec, 's', Decision{}},
		{at + 2*bsec, 'c', bClosed},
		{at + 2*bsec, 'c', bClosed},
	})
	if keys := r.mr.Keys(); len(keys) != 0 {
		t.Fatalf("a closed endpoint left keys: %q", keys)
	}
	if s := mustStatus(t, b, epLocal); s != (BackoffStatus{}) {
		t.Fatalf("status after Success: %+v", s)
	}
	runBackoff(t, b, r, epLocal, []bstep{
		{at + 3*bsec, 'f', bOpen(5 * bsec)},
		{at + 8*bsec, 'c', bProbe(30 * bsec)},
		{at + 8*bsec, 'f', bOpen(10 * bsec)},
	})
}

func TestBackoffStaleFailuresDoNotEscalate(t *testing.T) {
	b, r := newTestBackoff(t, backoffConfig())
	runBackoff(t, b, r, epLocal, []bstep{
		// Three in-flight requests fail together: one open period of 5 s.
		{0, 'f', bOpen(5 * bsec)},
		{0, 'f', bOpen(5 * bsec)},
		{2 * bsec, 'f', bOpen(3 * bsec)},
		{2 * bsec, 'c', bOpen(3 * bsec)},
		// Half-open with nobody probing: a failure still counts as the
		// endpoint failing after its delay, and escalates.
		{5 * bsec, 'f', bOpen(10 * bsec)},
		{7 * bsec, 'f', bOpen(8 * bsec)},
		{15 * bsec, 'c', bProbe(30 * bsec)},
		{16 * bsec, 'f', bOpen(20 * bsec)},
		{16 * bsec, 'f', bOpen(20 * bsec)},
	})
	wantStatus(t, b, epLocal, "status", BackoffStatus{State: StateOpen, Opens: 3, Failures: 7, Delay: 20 * bsec, RetryAfter: 20 * bsec})
}

func TestBackoffOneProbeAcrossReplicas(t *testing.T) {
	bs, r := probeDueReplicas(t, 3)
	ctx := context.Background()
	probes := 0
	for i := 0; i < 30; i++ {
		d, err := bs[i%3].Check(ctx, epOpenAI)
		if err != nil {
			t.Fatal(err)
		}
		switch d {
		case bProbe(30 * bsec):
			probes++
		case bProbing(30 * bsec):
		default:
			t.Fatalf("check %d: %+v", i, d)
		}
	}
	if probes != 1 {
		t.Fatalf("%d probes handed out in one half-open period, want 1", probes)
	}
	r.at(20 * bsec)
	wantStatus(t, bs[2], epOpenAI, "status while probing", BackoffStatus{State: StateHalfOpen, Opens: 1, Failures: 1, Delay: 5 * bsec, RetryAfter: 15 * bsec, Probing: true})
	if st := mustStatus(t, bs[1], epOpenAI).State; st != StateHalfOpen || st.String() != "half-open" {
		t.Fatalf("State = %v", st)
	}
	// The probe's success closes the endpoint for every replica.
	if err := bs[0].Success(ctx, epOpenAI); err != nil {
		t.Fatal(err)
	}
	for i, b := range bs {
		if d, _ := b.Check(ctx, epOpenAI); d != bClosed {
			t.Fatalf("replica %d after Success: %+v", i, d)
		}
	}
}

func TestBackoffProbeLeaseExpires(t *testing.T) {
	b, r := newTestBackoff(t, backoffConfig())
	runBackoff(t, b, r, epLocal, []bstep{
		{0, 'f', bOpen(5 * bsec)},
		{5 * bsec, 'c', bProbe(30 * bsec)},
		// The prober crashed: nobody else may probe until its lease ends...
		{35*bsec - bms, 'c', bProbing(bms)},
		// ...then exactly one caller gets a new lease.
		{35 * bsec, 'c', bProbe(30 * bsec)},
		{35 * bsec, 'c', bProbing(30 * bsec)},
		{64 * bsec, 'c', bProbing(1 * bsec)},
		// The new probe fails: the next delay, and no probe is out.
		{64 * bsec, 'f', bOpen(10 * bsec)},
		{73 * bsec, 'c', bOpen(1 * bsec)},
		{74 * bsec, 'c', bProbe(30 * bsec)},
	})
	wantStatus(t, b, epLocal, "status", BackoffStatus{State: StateHalfOpen, Opens: 2, Failures: 2, Delay: 10 * bsec, RetryAfter: 30 * bsec, Probing: true})
}

// ttlStep is a report or check of epLocal at an instant (from epoch) and
// the TTL of its key after it. op: 'f' Failure, 'c' Check, 'w' only wait.
type ttlStep struct {
	at  time.Duration
	op  byte
	ttl time.Duration // 0: no key
}

// runTTLSteps runs steps, failing the test on a TTL other than the step's,
// and returns each step's decision.
func runTTLSteps(t *testing.T, b *Backoff, r *testRedis, key string, steps []ttlStep) []Decision {
	t.Helper()
	ctx := context.Background()
	ds := make([]Decision, len(steps))
	for i, s := range steps {
		r.at(s.at)
		var err error
		switch s.op {
		case 'f':
			ds[i], err = b.Failure(ctx, epLocal)
		case 'c':
			ds[i], err = b.Check(ctx, epLocal)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := r.mr.TTL(key); got != s.ttl {
			t.Fatalf("step %d at %v: TTL %v, want %v (keys %q)", i, s.at, got, s.ttl, r.mr.Keys())
		}
	}
	return ds
}

func TestBackoffKeysAndTTL(t *testing.T) {
	b, r := newTestBackoff(t, backoffConfig())
	ctx := context.Background()
	const key = "floodgate:{e:llm}:http://localhost:1234"
	// Checks of a closed endpoint write nothing.
	for i := 0; i < 5; i++ {
		if d, _ := b.Check(ctx, epLocal); d != bClosed {
			t.Fatalf("check %d: %+v", i, d)
		}
	}
	if keys := r.mr.Keys(); len(keys) != 0 {
		t.Fatalf("checks of a closed endpoint wrote %q", keys)
	}
	runTTLSteps(t, b, r, key, []ttlStep{
		{0, 'f', 305 * bsec},           // open 5 s + LLMBackoffMax
		{2 * bsec, 'f', 303 * bsec},    // stale: TTL untouched
		{3 * bsec, 'c', 302 * bsec},    // denied: nothing written
		{5 * bsec, 'c', 330 * bsec},    // probe: lease + LLMBackoffMax
		{6 * bsec, 'f', 310 * bsec},    // next open period 10 s + 300 s
		{16 * bsec, 'c', 330 * bsec},   // probe again
		{45 * bsec, 'c', 301 * bsec},   // still probing until 46 s: nothing written
		{346*bsec - bms, 'w', 1 * bms}, // nobody came back: the key is about to go
		{346 * bsec, 'w', 0},           // forgotten
		{346 * bsec, 'c', 0},           // closed, and checking writes nothing
	})
	// A forgotten endpoint starts the backoffSched again.
	runBackoff(t, b, r, epLocal, []bstep{{346 * bsec, 'f', bOpen(5 * bsec)}})
	fields, err := r.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	u := epoch.Add(351 * bsec).UnixMilli()
	want := map[string]string{"o": "1", "d": "5000", "u": strconv.FormatInt(u, 10), "p": "0", "t": "", "f": "1"}
	if len(fields) != len(want) {
		t.Fatalf("hash %v, want %v", fields, want)
	}
	for k, v := range want {
		if fields[k] != v {
			t.Fatalf("hash %v, want %v", fields, want)
		}
	}
}

// TestBackoffKeysIdleTTL: a write gives the key its deadline plus
// LLMBackoffMax, capped at MaxIdleTime, never below the deadline itself.
func TestBackoffKeysIdleTTL(t *testing.T) {
	cfg := backoffConfig()
	cfg.MaxRequestsPerUserHour, cfg.UserCooldown, cfg.MaxIdleTime = 0, 10*bsec, time.Minute
	b, r := newTestBackoff(t, cfg)
	const key = "floodgate:{e:llm}:http://localhost:1234"
	steps := []ttlStep{
		{0, 'f', time.Minute},          // 5 s + 300 s, capped at 1 min
		{5 * bsec, 'c', time.Minute},   // probe: 30 s + 300 s, capped
		{5 * bsec, 'f', time.Minute},   // open 10 s
		{15 * bsec, 'c', time.Minute},  // probe
		{15 * bsec, 'f', time.Minute},  // open 20 s
		{35 * bsec, 'c', time.Minute},  // probe
		{35 * bsec, 'f', time.Minute},  // open 40 s
		{75 * bsec, 'c', time.Minute},  // probe
		{75 * bsec, 'f', 80 * bsec},    // open 80 s: the open period itself
		{155*bsec - bms, 'w', 1 * bms}, // open until the last millisecond
		{155*bsec - bms, 'c', 1 * bms}, // and denied: bOpen(1ms)
		{155 * bsec, 'w', 0},           // then forgotten: closed, level lost
		{155 * bsec, 'c', 0},           // closed
		{155 * bsec, 'f', time.Minute}, // and the schedule starts again
	}
	for i, d := range runTTLSteps(t, b, r, key, steps) {
		s := steps[i]
		if s.op == 'c' && s.ttl == 0 && d != bClosed || s.op == 'c' && s.at == 155*bsec-bms && d != bOpen(bms) {
			t.Fatalf("step %d at %v: %+v", i, s.at, d)
		}
	}
	if s := mustStatus(t, b, epLocal); s.Opens != 1 || s.Delay != 5*bsec {
		t.Fatalf("after the key expired the schedule did not restart: %+v", s)
	}
	if got := backoffKeyTTL(5*bsec, 300*bsec, time.Minute); got != time.Minute {
		t.Fatalf("backoffKeyTTL = %v", got)
	}
}

func TestBackoffJitter(t *testing.T) {
	cfg := backoffConfig()
	cfg.LLMBackoffJitter = 0.5
	b, r := newTestBackoff(t, cfg)
	frac := 0.5
	b.jitter = func() float64 { return frac }
	// A quarter off each period; the backoffSched still grows from 5 s, 10 s...
	runBackoff(t, b, r, epLocal, []bstep{
		{0, 'f', bOpen(3750 * bms)},
		{3750 * bms, 'c', bProbe(30 * bsec)},
		{4 * bsec, 'f', bOpen(7500 * bms)},
	})
	if s := mustStatus(t, b, epLocal); s.Delay != 10*bsec || s.RetryAfter != 7500*bms {
		t.Fatalf("status: %+v", s)
	}
	frac = 0
	runBackoff(t, b, r, epLocal, []bstep{
		{11500 * bms, 'c', bProbe(30 * bsec)},
		{11500 * bms, 'f', bOpen(20 * bsec)},
	})

	// The extreme: jitter 1 and a draw just below 1 leave 1 ms.
	cfg.LLMBackoffJitter = 1
	b2, r2 := newTestBackoff(t, cfg)
	b2.jitter = func() float64 { return 0.9999999 }
	runBackoff(t, b2, r2, epOpenAI, []bstep{{0, 'f', bOpen(1 * bms)}})

	// Real draws stay within (1 - jitter) * delay .. delay, and vary.
	cfg.LLMBackoffJitter = 0.3
	b3, _ := newTestBackoff(t, cfg)
	seen := map[time.Duration]bool{}
	for i := 0; i < 200; i++ {
		d, err := b3.Failure(context.Background(), "ep-"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if d.RetryAfter < 3500*bms || d.RetryAfter > 5*bsec {
			t.Fatalf("backoffJittered delay %v outside [3.5s, 5s]", d.RetryAfter)
		}
		seen[d.RetryAfter] = true
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct delays in 200 draws", len(seen))
	}
}

func TestBackoffFractionalMultiplier(t *testing.T) {
	cfg := backoffConfig()
	cfg.LLMRetryDelay = bsec
	cfg.LLMBackoffMultiplier = 1.5
	cfg.LLMBackoffMax = time.Minute
	b, r := newTestBackoff(t, cfg)
	ctx := context.Background()
	want := []int64{1000, 1500, 2250, 3375, 5062, 7593, 11389, 17083, 25624, 38436, 57654, 60000, 60000}
	for i, w := range want {
		d, err := b.Failure(ctx, epLocal)
		if err != nil {
			t.Fatal(err)
		}
		if d.RetryAfter != fromMs(w) {
			t.Fatalf("failure %d: delay %v, want %v", i+1, d.RetryAfter, fromMs(w))
		}
		r.advance(d.RetryAfter)
	}
}

// TestLocalBreakerMatchesScripts drives the FailLocal fallback and Redis
// through the same steps, jitter included: same backoffSched, same answers.
func TestLocalBreakerMatchesScripts(t *testing.T) {
	cfg := backoffConfig()
	cfg.LLMRetryDelay = 700 * bms
	cfg.LLMBackoffMultiplier = 1.7
	cfg.LLMBackoffMax = 40 * bsec
	cfg.LLMBackoffJitter = 0.35
	cfg.LLMProbeLease = 3 * bsec
	b, r := newTestBackoff(t, cfg)
	lb := &localBreaker{m: map[string]*localEndpoint{}}
	sc := b.sched()
	ctx := context.Background()
	draws := []float64{0.1, 0.9, 0.33, 0, 0.5, 0.77, 0.999, 0.2, 0.61, 0.05, 0.42, 0.8}
	for i, f := range draws {
		b.jitter = func() float64 { return f }
		now := r.now
		got, err := b.Failure(ctx, epLocal)
		if err != nil {
			t.Fatal(err)
		}
		want := lb.failure(now, epLocal, sc, jitterCut(cfg.LLMBackoffJitter, func() float64 { return f }))
		if got != want {
			t.Fatalf("failure %d: redis %+v, epLocal %+v", i, got, want)
		}
		// A stale failure halfway, then the probe at the end of the period.
		r.advance((got.RetryAfter / 2).Truncate(bms)) // Redis TIME has ms resolution here
		got, _ = b.Failure(ctx, epLocal)
		if want := lb.failure(r.now, epLocal, sc, 0); got != want {
			t.Fatalf("stale failure %d: redis %+v, epLocal %+v", i, got, want)
		}
		r.advance(got.RetryAfter)
		gotC, _ := b.Check(ctx, epLocal)
		_, wantC := lb.check(r.now, []string{epLocal}, cfg.LLMProbeLease, cfg.LLMBackoffMax, cfg.MaxIdleTime, testToken)
		if gotC != wantC || gotC != bProbe(3*bsec) {
			t.Fatalf("probe %d: redis %+v, epLocal %+v", i, gotC, wantC)
		}
	}
}

func TestBackoffPick(t *testing.T) {
	b, r := newTestBackoff(t, backoffConfig())
	ctx := context.Background()
	type pstep struct {
		at   time.Duration
		op   string // "pick", or "fail"/"ok" of an endpoint
		ep   string
		want Decision
	}
	for i, s := range []pstep{
		{0, "pick", epLocal, bClosed},
		{0, "fail", epLocal, Decision{}},
		{0, "pick", epOpenAI, bClosed}, // the fallback
		{1 * bsec, "fail", epOpenAI, Decision{}},
		{1 * bsec, "pick", "", bOpen(4 * bsec)},        // the local model comes back first
		{5 * bsec, "pick", epLocal, bProbe(30 * bsec)}, // the preferred one, probed
		{5 * bsec, "pick", "", bOpen(1 * bsec)},        // OpenAI reopens sooner than the lease ends
		{6 * bsec, "pick", epOpenAI, bProbe(30 * bsec)},
		{6 * bsec, "pick", "", bProbing(29 * bsec)}, // both probed: the lease that ends first
		{7 * bsec, "ok", epOpenAI, Decision{}},
		{7 * bsec, "pick", epOpenAI, bClosed},
		{8 * bsec, "ok", epLocal, Decision{}},
		{8 * bsec, "pick", epLocal, bClosed},
	} {
		r.at(s.at)
		switch s.op {
		case "fail":
			if _, err := b.Failure(ctx, s.ep); err != nil {
				t.Fatal(err)
			}
		case "ok":
			if err := b.Success(ctx, s.ep); err != nil {
				t.Fatal(err)
			}
		case "pick":
			ep, d, err := b.Pick(ctx, epLocal, epOpenAI)
			if err != nil {
				t.Fatal(err)
			}
			if ep != s.ep || d != s.want {
				t.Fatalf("step %d at %v: Pick = %q %+v, want %q %+v", i, s.at, ep, d, s.ep, s.want)
			}
		}
	}

	// One round trip, however many endpoints.
	eps := make([]string, MaxPickEndpoints)
	for i := range eps {
		eps[i] = "ep-" + strconv.Itoa(i)
		if _, err := b.Failure(ctx, eps[i]); err != nil {
			t.Fatal(err)
		}
	}
	hook := &roundTripHook{}
	r.rdb.AddHook(hook)
	ep, d, err := b.Pick(ctx, eps...)
	if err != nil || ep != "" || d != bOpen(5*bsec) {
		t.Fatalf("Pick over %d open endpoints = %q %+v %v", len(eps), ep, d, err)
	}
	if n := hook.sent.Load(); n != 1 {
		t.Fatalf("Pick sent %d commands, want 1", n)
	}
}

func TestBackoffBadInput(t *testing.T) {
	l, r := newTestLimiter(t, backoffConfig())
	ctx := context.Background()
	before := r.mr.CommandCount()
	long := strings.Repeat("x", MaxNameLen+1)
	for _, name := range []string{"", long, "\xff", "a{b", "a}b", "{llm}"} {
		b, err := l.Backoff(name, BackoffSettings{})
		if b != nil || !errors.Is(err, ErrInvalidName) {
			t.Fatalf("Backoff(%q) = %v, %v, want ErrInvalidName", name, b, err)
		}
	}
	b := mustBackoff(t, l, "llm")
	if b.Name() != "llm" {
		t.Fatalf("valid Backoff: %q", b.Name())
	}
	for _, ep := range []string{"", long, "http://\xff\xfe"} {
		_, err1 := b.Check(ctx, ep)
		_, err2 := b.Failure(ctx, ep)
		err3 := b.Success(ctx, ep)
		_, _, err4 := b.Pick(ctx, epLocal, ep)
		_, err5 := b.Status(ctx, ep)
		for i, err := range []error{err1, err2, err3, err4, err5} {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("endpoint %.20q call %d: %v, want ErrInvalidName", ep, i, err)
			}
		}
	}
	tooMany := make([]string, MaxPickEndpoints+1)
	for i := range tooMany {
		tooMany[i] = "ep"
	}
	for _, eps := range [][]string{nil, tooMany} {
		if _, _, err := b.Pick(ctx, eps...); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Pick(%d endpoints) = %v, want ErrInvalidArgument", len(eps), err)
		}
	}
	if n := r.mr.CommandCount() - before; n != 0 || len(r.mr.Keys()) != 0 {
		t.Fatalf("bad input reached Redis: %d commands, keys %q", n, r.mr.Keys())
	}

	// Endpoints with key syntax in them are fine, distinct, and all keep
	// the Backoff's hash tag (one Cluster slot).
	weird := []string{"a}b", "{x}", "a", "a:b", strings.Repeat("y", MaxNameLen), "é"}
	for _, ep := range weird {
		if d, err := b.Failure(ctx, ep); err != nil || d != bOpen(5*bsec) {
			t.Fatalf("Failure(%.20q) = %+v %v", ep, d, err)
		}
	}
	keys := r.mr.Keys()
	if len(keys) != len(weird) {
		t.Fatalf("%d keys for %d endpoints: %q", len(keys), len(weird), keys)
	}
	for _, k := range keys {
		open := strings.IndexByte(k, '{')
		end := strings.IndexByte(k[open:], '}')
		if tag := k[open+1 : open+end]; tag != "e:llm" {
			t.Fatalf("key %q has hash tag %q, want e:llm", k, tag)
		}
	}
	// Another Backoff name is another namespace.
	if d, err := mustBackoff(t, l, "tts").Check(ctx, "a"); err != nil || d != bClosed {
		t.Fatalf("tts/a = %+v %v, want closed", d, err)
	}
}

func TestBackoffFailLocal(t *testing.T) {
	cfg := backoffConfig()
	cfg.RedisTimeout = 20 * bms
	l, r := newTestLimiter(t, cfg)
	b1, b2 := mustBackoff(t, l, "llm"), mustBackoff(t, l, "llm") // two handles, one fallback
	now := epoch
	for _, b := range []*Backoff{b1, b2} {
		b.now = func() time.Time { return now }
	}
	r.mr.Close()
	ctx := context.Background()
	deg := func(d Decision) Decision { d.Degraded = true; return d }
	type lstep struct {
		at   time.Duration
		b    *Backoff
		op   string
		ep   string
		want Decision
	}
	for i, s := range []lstep{
		{0, b1, "check", epLocal, deg(bClosed)},
		{0, b1, "fail", epLocal, deg(bOpen(5 * bsec))},
		{1 * bsec, b2, "check", epLocal, deg(bOpen(4 * bsec))},
		{1 * bsec, b2, "fail", epLocal, deg(bOpen(4 * bsec))},
		{2 * bsec, b2, "pick", epOpenAI, deg(bClosed)},
		{5 * bsec, b2, "check", epLocal, deg(bProbe(30 * bsec))},
		{5 * bsec, b1, "check", epLocal, deg(bProbing(30 * bsec))},
		{5 * bsec, b1, "fail", epLocal, deg(bOpen(10 * bsec))},
		{15 * bsec, b1, "pick", epLocal, deg(bProbe(30 * bsec))},
		{16 * bsec, b1, "fail", epOpenAI, deg(bOpen(5 * bsec))},
		{16 * bsec, b2, "pick", "", deg(bOpen(5 * bsec))},
		{16 * bsec, b2, "ok", epLocal, Decision{}},
		{16 * bsec, b1, "check", epLocal, deg(bClosed)},
		{17 * bsec, b1, "fail", epLocal, deg(bOpen(5 * bsec))},
	} {
		now = epoch.Add(s.at)
		var got Decision
		var err error
		ep := s.ep
		switch s.op {
		case "check":
			got, err = s.b.Check(ctx, s.ep)
		case "fail":
			got, err = s.b.Failure(ctx, s.ep)
		case "ok":
			err = s.b.Success(ctx, s.ep)
		case "pick":
			ep, got, err = s.b.Pick(ctx, epLocal, epOpenAI)
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got != s.want || (s.op == "pick" && ep != s.ep) {
			t.Fatalf("step %d (%s at %v): got %q %+v, want %q %+v", i, s.op, s.at, ep, got, s.ep, s.want)
		}
	}
	if _, err := b1.Status(ctx, epLocal); !IsUnavailable(err) {
		t.Fatalf("Status during an outage: %v, want an unavailable error", err)
	}
}

func TestBackoffFailOpenAndClosed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		mode FailureMode
		want Decision
		pick string
	}{
		{FailOpen, Decision{Allowed: true, Remaining: Unlimited, Degraded: true}, epLocal},
		{FailClosed, Decision{Reason: ReasonRedisDown, RetryAfter: redisRetryInterval, ResetAfter: redisRetryInterval, Degraded: true}, ""},
	} {
		cfg := backoffConfig()
		cfg.RedisTimeout = 20 * bms
		cfg.BackoffOnRedisError = tc.mode
		b, r := newTestBackoff(t, cfg)
		r.mr.Close()
		for i := 0; i < 3; i++ {
			if d, err := b.Failure(ctx, epLocal); err != nil || d != tc.want {
				t.Fatalf("%v: Failure = %+v %v, want %+v", tc.mode, d, err, tc.want)
			}
			if d, err := b.Check(ctx, epLocal); err != nil || d != tc.want {
				t.Fatalf("%v: Check = %+v %v, want %+v", tc.mode, d, err, tc.want)
			}
			if ep, d, err := b.Pick(ctx, epLocal, epOpenAI); err != nil || d != tc.want || ep != tc.pick {
				t.Fatalf("%v: Pick = %q %+v %v", tc.mode, ep, d, err)
			}
			if err := b.Success(ctx, epLocal); err != nil {
				t.Fatalf("%v: Success = %v", tc.mode, err)
			}
		}
	}
}

func TestBackoffRedisErrorIsNotAnOutage(t *testing.T) {
	b, r := newTestBackoff(t, backoffConfig())
	ctx := context.Background()
	// Something else owns the key: Redis answers WRONGTYPE, which must
	// surface as ErrForeignKey, not be papered over by the fallback.
	if err := r.rdb.Set(ctx, "floodgate:{e:llm}:"+epLocal, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := b.Check(ctx, epLocal); !errors.Is(err, ErrForeignKey) || IsUnavailable(err) || d.Degraded {
		t.Fatalf("Check on a foreign key = %+v %v, want ErrForeignKey", d, err)
	}
	if _, _, err := b.Pick(ctx, epOpenAI, epLocal); err != nil {
		t.Fatalf("Pick stops at the closed endpoint before the foreign key: %v", err)
	}
	if _, err := b.Failure(ctx, epLocal); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("Failure on a foreign key = %v", err)
	}
	if _, err := b.Status(ctx, epLocal); !errors.Is(err, ErrForeignKey) || !strings.HasPrefix(err.Error(), "limiter: backoff_state on ") {
		t.Fatalf("Status on a foreign key = %v", err)
	}
	// Said once, by the call path, as from every policy.
	if _, err := b.Check(ctx, epLocal); strings.Count(err.Error(), ErrForeignKey.Error()) != 1 {
		t.Fatalf("Check on a foreign key says ErrForeignKey %d times: %v", strings.Count(err.Error(), ErrForeignKey.Error()), err)
	}
	if err := b.Success(ctx, epLocal); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("Success on a foreign key = %v", err)
	}
	if got, _ := r.rdb.Get(ctx, "floodgate:{e:llm}:"+epLocal).Result(); got != "x" {
		t.Fatalf("the foreign key was changed to %q", got)
	}

	// The caller's own cancelled context is not an outage either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if d, err := b.Check(cctx, epOpenAI); !errors.Is(err, context.Canceled) || d.Degraded {
		t.Fatalf("Check with a cancelled context = %+v %v", d, err)
	}
}

func TestBackoffWait(t *testing.T) {
	b, _ := newTestBackoff(t, backoffConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if d, err := b.Wait(ctx, epLocal); err != nil || d != bClosed {
		t.Fatalf("Wait on a closed endpoint = %+v %v", d, err)
	}
	if _, err := b.Failure(ctx, epLocal); err != nil {
		t.Fatal(err)
	}
	// Open for 5 s, but the caller gives it 1 s: fail at once, as
	// x/time/rate does, with the decision that says how long it would be.
	short, cancel2 := context.WithTimeout(ctx, bsec)
	defer cancel2()
	d, err := b.Wait(short, epLocal)
	if !errors.Is(err, context.DeadlineExceeded) || d != bOpen(5*bsec) {
		t.Fatalf("Wait past the deadline = %+v %v", d, err)
	}
	if _, err := b.Wait(ctx, ""); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Wait(\"\") = %v", err)
	}
}

func TestBackoffNilAndZero(t *testing.T) {
	ctx := context.Background()
	var l *Limiter
	if b, err := l.Backoff("llm", BackoffSettings{}); b != nil || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil Limiter's Backoff = %v, %v, want ErrInvalidArgument", b, err)
	}
	for _, b := range []*Backoff{nil, {}} {
		if _, err := b.Check(ctx, epLocal); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Check = %v", err)
		}
		if err := b.Success(ctx, epLocal); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Success = %v", err)
		}
		if _, _, err := b.Pick(ctx, epLocal); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Pick = %v", err)
		}
	}
}

func TestBackoffObserver(t *testing.T) {
	obs := &recordObserver{}
	cfg := backoffConfig()
	cfg.Observer = obs
	b, _ := newTestBackoff(t, cfg)
	ctx := context.Background()
	b.Check(ctx, epLocal)
	b.Failure(ctx, epLocal)
	b.Pick(ctx, epLocal)
	b.Success(ctx, epLocal)
	wantD := []Decision{bClosed, bOpen(5 * bsec)}
	wantOps := []string{"backoff_check", "backoff_failure", "backoff_check", "backoff_success"}
	if len(obs.decisions) != len(wantD) || obs.decisions[0] != wantD[0] || obs.decisions[1] != wantD[1] {
		t.Fatalf("decisions %+v, want %+v", obs.decisions, wantD)
	}
	for _, p := range obs.policies {
		if p != PolicyBackoff {
			t.Fatalf("decision policies %q, want all %q", obs.policies, PolicyBackoff)
		}
	}
	if strings.Join(obs.ops, ",") != strings.Join(wantOps, ",") {
		t.Fatalf("ops %q, want %q", obs.ops, wantOps)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateClosed: "closed", StateHalfOpen: "half-open", StateOpen: "open", 7: "State(7)", -1: "State(-1)"} {
		if s.String() != want {
			t.Fatalf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}

// TestLocalBreakerRegistry: handles of one name share a fallback, other
// names and Limiters do not.
func TestLocalBreakerRegistry(t *testing.T) {
	r := newTestRedis(t)
	l1, _ := New(r.rdb, backoffConfig())
	l2, _ := New(r.rdb, backoffConfig())
	h1, h2 := mustBackoff(t, l1, "llm"), mustBackoff(t, l1, "llm")
	if h1 == h2 || h1.local != h2.local {
		t.Fatal("two handles of one name have separate fallbacks")
	}
	if h1.local == mustBackoff(t, l1, "tts").local || h1.local == mustBackoff(t, l2, "llm").local {
		t.Fatal("distinct names or Limiters share a fallback")
	}
}
