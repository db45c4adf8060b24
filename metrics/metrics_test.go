package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

func newObserver(t *testing.T, opts ...Option) (*Observer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	o, err := New(reg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return o, reg
}

func compare(t *testing.T, reg prometheus.Gatherer, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestObserveDecision(t *testing.T) {
	o, reg := newObserver(t)
	steps := []struct {
		policy string
		d      limiter.Decision
	}{
		{limiter.PolicyUser, limiter.Decision{Allowed: true, Remaining: 19}},
		{limiter.PolicyUser, limiter.Decision{Allowed: true, Remaining: 18}},
		{limiter.PolicyUser, limiter.Decision{Reason: limiter.ReasonCooldown, RetryAfter: 6 * time.Second}},
		{limiter.PolicyUser, limiter.Decision{Reason: limiter.ReasonCooldown, Cached: true}},
		{limiter.PolicyUser, limiter.Decision{Reason: limiter.ReasonWindow}},
		{limiter.PolicyUser, limiter.Decision{Allowed: true, Degraded: true}},
		{limiter.PolicySlots, limiter.Decision{Reason: limiter.ReasonSlots}},
		{limiter.PolicyBackoff, limiter.Decision{Reason: limiter.ReasonRedisDown, Degraded: true}},
		{limiter.PolicyBucket, limiter.Decision{Reason: limiter.ReasonRate, Cached: true}},
	}
	for _, s := range steps {
		o.ObserveDecision(s.policy, s.d)
	}
	compare(t, reg, `
# HELP floodgate_decisions_total Limiter decisions by policy, reason and outcome.
# TYPE floodgate_decisions_total counter
floodgate_decisions_total{allowed="false",policy="backoff",reason="redis_down"} 1
floodgate_decisions_total{allowed="false",policy="bucket",reason="rate"} 1
floodgate_decisions_total{allowed="false",policy="slots",reason="slots"} 1
floodgate_decisions_total{allowed="false",policy="user",reason="cooldown"} 2
floodgate_decisions_total{allowed="false",policy="user",reason="window"} 1
floodgate_decisions_total{allowed="true",policy="user",reason="none"} 3
# HELP floodgate_degraded_decisions_total Decisions taken without the shared state because Redis could not be reached (the policy's FailureMode).
# TYPE floodgate_degraded_decisions_total counter
floodgate_degraded_decisions_total{allowed="false",policy="backoff"} 1
floodgate_degraded_decisions_total{allowed="true",policy="user"} 1
# HELP floodgate_local_cache_hits_total Repeat denials answered from the in-process deny cache, without a Redis round trip.
# TYPE floodgate_local_cache_hits_total counter
floodgate_local_cache_hits_total{policy="bucket"} 1
floodgate_local_cache_hits_total{policy="user"} 1
`, "floodgate_decisions_total", "floodgate_degraded_decisions_total", "floodgate_local_cache_hits_total")
}

// timeoutErr is a net.Error, which limiter.IsUnavailable treats as
// "Redis could not be reached".
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestObserveRedis(t *testing.T) {
	o, reg := newObserver(t, WithBuckets(0.001, 0.01))
	steps := []struct {
		op   string
		took time.Duration
		err  error
	}{
		{"user_allow", 500 * time.Microsecond, nil},
		{"user_allow", time.Millisecond, nil}, // on the bound: counted in le=0.001
		{"user_allow", 5 * time.Millisecond, nil},
		{"user_allow", 250 * time.Millisecond, fmt.Errorf("limiter: user_allow on k: %w", timeoutErr{})},
		{"user_allow", 2 * time.Millisecond, errors.New("ERR Error running script")},
		{"slots_acquire", 3 * time.Millisecond, nil},
	}
	for _, s := range steps {
		o.ObserveRedis(s.op, s.took, s.err)
	}
	compare(t, reg, `
# HELP floodgate_redis_duration_seconds Duration of the limiter's Redis round trips by script or command.
# TYPE floodgate_redis_duration_seconds histogram
floodgate_redis_duration_seconds_bucket{op="slots_acquire",le="0.001"} 0
floodgate_redis_duration_seconds_bucket{op="slots_acquire",le="0.01"} 1
floodgate_redis_duration_seconds_bucket{op="slots_acquire",le="+Inf"} 1
floodgate_redis_duration_seconds_sum{op="slots_acquire"} 0.003
floodgate_redis_duration_seconds_count{op="slots_acquire"} 1
floodgate_redis_duration_seconds_bucket{op="user_allow",le="0.001"} 2
floodgate_redis_duration_seconds_bucket{op="user_allow",le="0.01"} 4
floodgate_redis_duration_seconds_bucket{op="user_allow",le="+Inf"} 5
floodgate_redis_duration_seconds_sum{op="user_allow"} 0.2585
floodgate_redis_duration_seconds_count{op="user_allow"} 5
# HELP floodgate_redis_errors_total Failed Redis round trips by script or command; kind "oom" means Redis is full and refuses writes (maxmemory under noeviction), "unavailable" that it could not be reached or timed out, "error" that it answered with an error.
# TYPE floodgate_redis_errors_total counter
floodgate_redis_errors_total{kind="error",op="user_allow"} 1
floodgate_redis_errors_total{kind="unavailable",op="user_allow"} 1
`, "floodgate_redis_duration_seconds", "floodgate_redis_errors_total")
}

func TestWatch(t *testing.T) {
	o, reg := newObserver(t, WithConstLabels(prometheus.Labels{"bot": "demo"}))
	inUse, slotsErr := 3, error(nil)
	state, stateErr := limiter.StateOpen, error(nil)
	if err := o.WatchSlots("llm", func(context.Context) (int, error) { return inUse, slotsErr }); err != nil {
		t.Fatal(err)
	}
	if err := o.WatchEndpoint("llm/http://localhost:1234", func(context.Context) (limiter.State, error) { return state, stateErr }); err != nil {
		t.Fatal(err)
	}
	names := []string{"floodgate_slots_in_use", "floodgate_endpoint_state", "floodgate_watch_errors_total"}
	// endpoint gives the three series of one state: 1 for it, 0 for the others.
	endpoint := func(closed, halfOpen, open int) string {
		return fmt.Sprintf(`
# HELP floodgate_endpoint_state State of an LLM endpoint across all replicas: 1 for the state it is in, 0 for the others; "closed" (in use), "half-open" (one probe may test it), "open" (backing off).
# TYPE floodgate_endpoint_state gauge
floodgate_endpoint_state{bot="demo",endpoint="llm/http://localhost:1234",state="closed"} %d
floodgate_endpoint_state{bot="demo",endpoint="llm/http://localhost:1234",state="half-open"} %d
floodgate_endpoint_state{bot="demo",endpoint="llm/http://localhost:1234",state="open"} %d
`, closed, halfOpen, open)
	}
	const slotsHead = `# HELP floodgate_slots_in_use Slots of a concurrent-user pool held right now, across all replicas.
# TYPE floodgate_slots_in_use gauge
`
	const errsHead = `# HELP floodgate_watch_errors_total Scrapes at which a WatchSlots or WatchEndpoint function failed or timed out; its gauge was left out.
# TYPE floodgate_watch_errors_total counter
`
	steps := []struct {
		name     string
		inUse    int
		err      error
		state    limiter.State
		stateErr error
		want     string
	}{
		{"values read at scrape time", 3, nil, limiter.StateOpen, nil,
			endpoint(0, 0, 1) + slotsHead + `floodgate_slots_in_use{bot="demo",pool="llm"} 3
`},
		{"values change between scrapes", 7, nil, limiter.StateClosed, nil,
			endpoint(1, 0, 0) + slotsHead + `floodgate_slots_in_use{bot="demo",pool="llm"} 7
`},
		{"a failing function leaves its gauge out and counts the error", 7, errors.New("redis down"), limiter.StateHalfOpen, nil,
			endpoint(0, 1, 0) + errsHead + `floodgate_watch_errors_total{bot="demo",name="llm",watch="slots"} 1
`},
		{"a negative count is an error too", -1, nil, limiter.StateHalfOpen, nil,
			endpoint(0, 1, 0) + errsHead + `floodgate_watch_errors_total{bot="demo",name="llm",watch="slots"} 2
`},
		{"a failing endpoint function leaves all three series out", 1, nil, limiter.StateOpen, errors.New("redis down"),
			"\n" + slotsHead + `floodgate_slots_in_use{bot="demo",pool="llm"} 1
` + errsHead + `floodgate_watch_errors_total{bot="demo",name="llm",watch="slots"} 2
floodgate_watch_errors_total{bot="demo",name="llm/http://localhost:1234",watch="endpoint"} 1
`},
		{"an unknown state is an error too", 1, nil, limiter.State(3), nil,
			"\n" + slotsHead + `floodgate_slots_in_use{bot="demo",pool="llm"} 1
` + errsHead + `floodgate_watch_errors_total{bot="demo",name="llm",watch="slots"} 2
floodgate_watch_errors_total{bot="demo",name="llm/http://localhost:1234",watch="endpoint"} 2
`},
		{"recovered", 1, nil, limiter.StateClosed, nil,
			endpoint(1, 0, 0) + slotsHead + `floodgate_slots_in_use{bot="demo",pool="llm"} 1
` + errsHead + `floodgate_watch_errors_total{bot="demo",name="llm",watch="slots"} 2
floodgate_watch_errors_total{bot="demo",name="llm/http://localhost:1234",watch="endpoint"} 2
`},
	}
	for _, s := range steps {
		inUse, slotsErr, state, stateErr = s.inUse, s.err, s.state, s.stateErr
		t.Run(s.name, func(t *testing.T) { compare(t, reg, s.want, names...) })
	}
}

func TestWatchTimeout(t *testing.T) {
	o, reg := newObserver(t, WithWatchTimeout(20*time.Millisecond))
	// A function that honours ctx: it returns when the scrape's deadline
	// passes, and its gauge is left out.
	if err := o.WatchSlots("stuck", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	if err := o.WatchSlots("fine", func(context.Context) (int, error) { return 4, nil }); err != nil {
		t.Fatal(err)
	}
	compare(t, reg, `
# HELP floodgate_slots_in_use Slots of a concurrent-user pool held right now, across all replicas.
# TYPE floodgate_slots_in_use gauge
floodgate_slots_in_use{pool="fine"} 4
# HELP floodgate_watch_errors_total Scrapes at which a WatchSlots or WatchEndpoint function failed or timed out; its gauge was left out.
# TYPE floodgate_watch_errors_total counter
floodgate_watch_errors_total{name="stuck",watch="slots"} 1
`, "floodgate_slots_in_use", "floodgate_watch_errors_total")
}

func TestInvalid(t *testing.T) {
	steps := []struct {
		name string
		opts []Option
		want string
	}{
		{"no buckets", []Option{WithBuckets()}, "at least one bucket"},
		{"negative bucket", []Option{WithBuckets(-1)}, "bucket 0 is -1"},
		{"decreasing buckets", []Option{WithBuckets(0.1, 0.01)}, "buckets must increase"},
		{"zero timeout", []Option{WithWatchTimeout(0)}, "watch timeout must be positive"},
		{"const label clashing with a variable label", []Option{WithConstLabels(prometheus.Labels{"policy": "x"})}, "metrics: registering"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			_, err := New(prometheus.NewRegistry(), s.opts...)
			if err == nil || !strings.Contains(err.Error(), s.want) {
				t.Fatalf("New: err = %v, want it to contain %q", err, s.want)
			}
		})
	}

	o, _ := newObserver(t)
	ok := func(context.Context) (int, error) { return 0, nil }
	if err := o.WatchSlots("", ok); err == nil || !strings.Contains(err.Error(), "empty slots name") {
		t.Errorf("empty name: err = %v", err)
	}
	if err := o.WatchSlots("llm", nil); err == nil || !strings.Contains(err.Error(), "nil function") {
		t.Errorf("nil fn: err = %v", err)
	}
	if err := o.WatchEndpoint("e", nil); err == nil || !strings.Contains(err.Error(), "nil function") {
		t.Errorf("nil endpoint fn: err = %v", err)
	}
	if err := o.WatchSlots("llm", ok); err != nil {
		t.Fatal(err)
	}
	if err := o.WatchSlots("llm", ok); err == nil || !strings.Contains(err.Error(), `slots "llm" is watched already`) {
		t.Errorf("duplicate: err = %v", err)
	}
	// The same name may be both a pool and an endpoint: different gauges.
	if err := o.WatchEndpoint("llm", func(context.Context) (limiter.State, error) { return limiter.StateClosed, nil }); err != nil {
		t.Errorf("endpoint named like a pool: %v", err)
	}

	// A conflicting metric of the same name is an error, not a panic.
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "floodgate_decisions_total", Help: "x"}))
	if _, err := New(reg); err == nil || !strings.Contains(err.Error(), "metrics: registering") {
		t.Errorf("conflict: err = %v", err)
	}
}

func TestNilObserver(t *testing.T) {
	var o *Observer
	o.ObserveDecision(limiter.PolicyUser, limiter.Decision{Allowed: true})
	o.ObserveRedis("user_allow", time.Millisecond, nil)
	if err := o.WatchSlots("llm", func(context.Context) (int, error) { return 0, nil }); err == nil {
		t.Error("WatchSlots on nil Observer: no error")
	}
}

// TestSharedRegistry: two Observers with the same options on one registry
// share their metrics instead of failing.
func TestSharedRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(reg)
	if err != nil {
		t.Fatalf("second New on the same registry: %v", err)
	}
	a.ObserveDecision(limiter.PolicyUser, limiter.Decision{Allowed: true})
	b.ObserveDecision(limiter.PolicyUser, limiter.Decision{Allowed: true})
	if err := a.WatchSlots("llm", func(context.Context) (int, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.WatchSlots("llm", func(context.Context) (int, error) { return 1, nil }); err == nil {
		t.Error("the same pool watched twice through two Observers: no error")
	}
	compare(t, reg, `
# HELP floodgate_decisions_total Limiter decisions by policy, reason and outcome.
# TYPE floodgate_decisions_total counter
floodgate_decisions_total{allowed="true",policy="user",reason="none"} 2
`, "floodgate_decisions_total")
}

// TestWithLimiter wires an Observer into a real Limiter on miniredis:
// alice's first message is allowed, her second denied by Redis (cooldown),
// her third denied from the local deny cache without a round trip.
func TestWithLimiter(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.SetTime(time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	o, reg := newObserver(t)
	cfg := limiter.DefaultConfig()
	cfg.Observer = o
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, want := range []limiter.Decision{
		{Allowed: true},
		{Reason: limiter.ReasonCooldown},
		{Reason: limiter.ReasonCooldown, Cached: true},
	} {
		d, err := l.Allow(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != want.Allowed || d.Reason != want.Reason || d.Cached != want.Cached {
			t.Fatalf("Allow #%d = %+v, want Allowed %v, Reason %v, Cached %v", i+1, d, want.Allowed, want.Reason, want.Cached)
		}
	}
	compare(t, reg, `
# HELP floodgate_decisions_total Limiter decisions by policy, reason and outcome.
# TYPE floodgate_decisions_total counter
floodgate_decisions_total{allowed="false",policy="user",reason="cooldown"} 2
floodgate_decisions_total{allowed="true",policy="user",reason="none"} 1
# HELP floodgate_local_cache_hits_total Repeat denials answered from the in-process deny cache, without a Redis round trip.
# TYPE floodgate_local_cache_hits_total counter
floodgate_local_cache_hits_total{policy="user"} 1
`, "floodgate_decisions_total", "floodgate_local_cache_hits_total")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var samples []string
	for _, mf := range mfs {
		if mf.GetName() != "floodgate_redis_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			samples = append(samples, fmt.Sprintf("%s=%d", m.GetLabel()[0].GetValue(), m.GetHistogram().GetSampleCount()))
		}
	}
	if fmt.Sprint(samples) != "[user_allow=2]" {
		t.Errorf("round trips timed: %v, want [user_allow=2] (the cached denial makes none)", samples)
	}
	if n := testutil.CollectAndCount(o.redisErrs); n != 0 {
		t.Errorf("redis error series = %d, want 0", n)
	}
}

// TestLint runs promlint over every metric family, populated.
func TestLint(t *testing.T) {
	o, reg := newObserver(t)
	o.ObserveDecision(limiter.PolicyUser, limiter.Decision{Reason: limiter.ReasonCooldown, Degraded: true, Cached: true})
	o.ObserveRedis("user_allow", time.Millisecond, errors.New("ERR"))
	if err := o.WatchSlots("llm", func(context.Context) (int, error) { return 0, errors.New("down") }); err != nil {
		t.Fatal(err)
	}
	if err := o.WatchEndpoint("e", func(context.Context) (limiter.State, error) { return limiter.StateClosed, nil }); err != nil {
		t.Fatal(err)
	}
	o.ObserveEviction(limiter.Eviction{Policy: "noeviction", Masters: 1}, nil)
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	if n != 12 {
		t.Errorf("series = %d, want 12 (one of each metric but slots_in_use, whose watch failed, and endpoint_state's three)", n)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
