// Package metrics exports what a Floodgate limiter does as Prometheus
// metrics. It is a separate package so that the limiter itself does not
// depend on the Prometheus client.
//
// An Observer counts every decision and times every Redis round trip; give
// it to the limiter through Config.Observer:
//
//	obs, err := metrics.New(prometheus.DefaultRegisterer)
//	if err != nil { ... }
//	cfg.Observer = obs
//	lim, err := limiter.New(rdb, cfg)
//	http.Handle("/metrics", promhttp.Handler())
//
// Gauges that need a look at Redis (slots in use, endpoint state) are read
// at scrape time from functions the caller registers with WatchSlots and
// WatchEndpoint, so they cost nothing between scrapes. The eviction
// metrics come from each eviction check the Limiter makes (at startup,
// and at each scrape once WatchEviction is given Limiter.CheckEviction);
// they are left out until one succeeds.
//
// Every metric name starts with "floodgate_":
//
//	floodgate_decisions_total{policy,reason,allowed}  counter
//	floodgate_degraded_decisions_total{policy,allowed} counter: Decision.Degraded
//	floodgate_local_cache_hits_total{policy}           counter: Decision.Cached
//	floodgate_budget_units_total{budget,outcome}       counter: a Budget's units, outcome "spent"
//	                                                   (settled, charged) or "denied"
//	floodgate_redis_duration_seconds{op}               histogram
//	floodgate_redis_errors_total{op,kind}              counter: kind is "oom" (Redis is full under
//	                                                   noeviction), "unavailable" or "error"
//	floodgate_redis_eviction_unsafe                    gauge: 1 when Redis can evict Floodgate's keys
//	                                                   (limiter.Eviction.Unsafe), 0 when it cannot
//	floodgate_redis_evicted_keys_total                 counter: Redis's INFO stats evicted_keys
//	floodgate_slots_in_use{pool}                       gauge, from WatchSlots
//	floodgate_endpoint_state{endpoint,state}           gauge, from WatchEndpoint: 1 for the state
//	                                                   the endpoint is in, 0 for the other two
//	floodgate_watch_errors_total{watch,name}           counter: a watch function failed or timed out
//	floodgate_redis_eviction_check_errors_total        counter: WatchEviction's check failed
//
// Label values are bounded: policies, reasons, ops and states are fixed
// sets, and pool and endpoint names come from the caller's configuration,
// never from chat users. An alert on a backing-off endpoint reads
// floodgate_endpoint_state{state="open"} == 1.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/limiter"
)

const namespace = "floodgate"

// DefaultBuckets are the Redis latency histogram's upper bounds in seconds:
// 50 µs doubling 15 times up to 0.82 s, past the default RedisTimeout of
// 500 ms, so a timed-out round trip lands in the last finite bucket.
var DefaultBuckets = prometheus.ExponentialBuckets(50e-6, 2, 15)

// DefaultWatchTimeout bounds each watch function during a scrape.
const DefaultWatchTimeout = time.Second

// Observer is a limiter.Observer that records into Prometheus metrics.
// Build it with New; the zero value is not usable, but a nil *Observer
// ignores everything, so it can stand in when metrics are off. It is safe
// for concurrent use.
type Observer struct {
	decisions *prometheus.CounterVec
	degraded  *prometheus.CounterVec
	cached    *prometheus.CounterVec
	units     *prometheus.CounterVec
	redisTime *prometheus.HistogramVec
	redisErrs *prometheus.CounterVec
	watch     *watchCollector
	eviction  *evictionCollector
}

var (
	_ limiter.Observer         = (*Observer)(nil)
	_ limiter.EvictionObserver = (*Observer)(nil)
)

// Option changes how New builds an Observer.
type Option func(*options)

type options struct {
	buckets      []float64
	constLabels  prometheus.Labels
	watchTimeout time.Duration
}

// WithBuckets sets the Redis latency histogram's upper bounds in seconds,
// which must be finite, positive and increasing. Default: DefaultBuckets.
func WithBuckets(upperBounds ...float64) Option {
	return func(o *options) { o.buckets = append([]float64(nil), upperBounds...) }
}

// WithConstLabels adds labels with fixed values to every metric, e.g.
// {"limiter": "chat"} when one process runs several Limiters.
func WithConstLabels(l prometheus.Labels) Option {
	return func(o *options) {
		o.constLabels = prometheus.Labels{}
		for k, v := range l {
			o.constLabels[k] = v
		}
	}
}

// WithWatchTimeout bounds each WatchSlots and WatchEndpoint function during
// a scrape (they run concurrently). Default: DefaultWatchTimeout.
func WithWatchTimeout(d time.Duration) Option {
	return func(o *options) { o.watchTimeout = d }
}

// New builds an Observer and registers its metrics with reg; nil means
// prometheus.DefaultRegisterer. When reg already holds identical metrics
// (another Observer built with the same options), the new Observer shares
// them, so several Limiters can report into one registry. It returns an
// error for invalid options or a registration conflict, and never panics.
func New(reg prometheus.Registerer, opts ...Option) (*Observer, error) {
	o := options{buckets: DefaultBuckets, watchTimeout: DefaultWatchTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkBuckets(o.buckets); err != nil {
		return nil, err
	}
	if o.watchTimeout <= 0 {
		return nil, fmt.Errorf("metrics: watch timeout must be positive, got %v", o.watchTimeout)
	}
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: name, Help: help, ConstLabels: o.constLabels,
		}, labels)
	}
	r := registrar{reg: reg}
	obs := &Observer{
		decisions: register(&r, counter("decisions_total",
			"Limiter decisions by policy, reason and outcome.", "policy", "reason", "allowed")),
		degraded: register(&r, counter("degraded_decisions_total",
			"Decisions taken without the shared state because Redis could not be reached (the policy's FailureMode).", "policy", "allowed")),
		cached: register(&r, counter("local_cache_hits_total",
			"Repeat denials answered from the in-process deny cache, without a Redis round trip.", "policy")),
		units: register(&r, counter("budget_units_total",
			`Units (LLM tokens) of a token budget: outcome "spent" by settled calls and charges, "denied" by refused reservations and charges.`, "budget", "outcome")),
		redisTime: register(&r, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "redis_duration_seconds",
			Help:        "Duration of the limiter's Redis round trips by script or command.",
			ConstLabels: o.constLabels, Buckets: o.buckets,
		}, []string{"op"})),
		redisErrs: register(&r, counter("redis_errors_total",
			`Failed Redis round trips by script or command; kind "oom" means Redis is full and refuses writes (maxmemory under noeviction), "unavailable" that it could not be reached or timed out, "error" that it answered with an error.`, "op", "kind")),
		watch:    register(&r, newWatchCollector(o.constLabels, o.watchTimeout)),
		eviction: register(&r, newEvictionCollector(o.constLabels, o.watchTimeout)),
	}
	if r.err != nil {
		return nil, r.err
	}
	return obs, nil
}

// registrar registers collectors with reg, taking the identical collector
// already there instead of a duplicate; after a failure it registers
// nothing more and err holds that failure.
type registrar struct {
	reg prometheus.Registerer
	err error
}

// register registers c through r and returns the collector to use: c, or
// the identical one already registered.
func register[T prometheus.Collector](r *registrar, c T) T {
	if r.err != nil {
		return c
	}
	err := r.reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing
		}
	}
	r.err = fmt.Errorf("metrics: registering: %w", err)
	return c
}

func checkBuckets(b []float64) error {
	if len(b) == 0 {
		return errors.New("metrics: the latency histogram needs at least one bucket")
	}
	for i, v := range b {
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			return fmt.Errorf("metrics: bucket %d is %g, want a finite number of seconds above 0", i, v)
		}
		if i > 0 && v <= b[i-1] {
			return fmt.Errorf("metrics: buckets must increase, got %g after %g", v, b[i-1])
		}
	}
	return nil
}

// ObserveDecision counts d under policy. It implements limiter.Observer.
func (o *Observer) ObserveDecision(policy string, d limiter.Decision) {
	if o == nil {
		return
	}
	allowed := strconv.FormatBool(d.Allowed)
	o.decisions.WithLabelValues(policy, d.Reason.String(), allowed).Inc()
	if d.Degraded {
		o.degraded.WithLabelValues(policy, allowed).Inc()
	}
	if d.Cached {
		o.cached.WithLabelValues(policy).Inc()
	}
}

// ObserveRedis records one Redis round trip. It implements
// limiter.Observer.
func (o *Observer) ObserveRedis(op string, took time.Duration, err error) {
	if o == nil {
		return
	}
	o.redisTime.WithLabelValues(op).Observe(took.Seconds())
	if err != nil {
		kind := "error"
		switch {
		case limiter.IsOutOfMemory(err):
			kind = "oom"
		case limiter.IsUnavailable(err):
			kind = "unavailable"
		}
		o.redisErrs.WithLabelValues(op, kind).Inc()
	}
}

// WatchSlots reports floodgate_slots_in_use{pool=name} at each scrape from
// fn, typically a closure over a Slots pool's InUse. While fn fails the
// gauge is left out of the scrape (stale rather than wrong) and
// floodgate_watch_errors_total{watch="slots",name=name} grows. Name must be
// non-empty and not watched already.
func (o *Observer) WatchSlots(name string, fn func(ctx context.Context) (int, error)) error {
	return watchFunc(o, "WatchSlots", watchSlots, name, fn, func(n int) error {
		if n < 0 {
			return fmt.Errorf("negative slot count %d", n)
		}
		return nil
	})
}

// WatchEndpoint reports floodgate_endpoint_state{endpoint=name,state} at
// each scrape from fn, typically a closure over Backoff.Status for one
// endpoint: one series per state ("closed", "half-open", "open"), 1 for
// the state fn returned and 0 for the others. fn must only read: it runs
// on every scrape. While fn fails the three series are left out and
// floodgate_watch_errors_total{watch="endpoint",name=name} grows. Name
// must be non-empty and not watched already.
func (o *Observer) WatchEndpoint(name string, fn func(ctx context.Context) (limiter.State, error)) error {
	return watchFunc(o, "WatchEndpoint", watchEndpoint, name, fn, func(s limiter.State) error {
		if s < limiter.StateClosed || s > limiter.StateOpen {
			return fmt.Errorf("unknown endpoint state %v", s)
		}
		return nil
	})
}

// watchFunc is WatchSlots and WatchEndpoint (method) past their arguments:
// it adds fn under kind and name, a value fn returns counting as its
// failure when valid rejects it.
func watchFunc[T ~int | ~int8](o *Observer, method string, kind watchKind, name string, fn func(context.Context) (T, error), valid func(T) error) error {
	if o == nil {
		return fmt.Errorf("metrics: %s on a nil Observer", method)
	}
	if fn == nil {
		return fmt.Errorf("metrics: %s %q: nil function", method, name)
	}
	return o.watch.add(kind, name, func(ctx context.Context) (float64, error) {
		v, err := fn(ctx)
		if err == nil {
			err = valid(v)
		}
		return float64(v), err
	})
}

type watchKind int

const (
	watchSlots watchKind = iota
	watchEndpoint
)

var watchKindNames = [...]string{"slots", "endpoint"}

// endpointStates are the values of floodgate_endpoint_state's state label.
var endpointStates = [...]limiter.State{limiter.StateClosed, limiter.StateHalfOpen, limiter.StateOpen}

// watchCollector produces the gauges that are read at scrape time.
type watchCollector struct {
	timeout time.Duration
	descs   [2]*prometheus.Desc
	errs    *prometheus.CounterVec

	mu  sync.Mutex
	fns [2]map[string]func(context.Context) (float64, error)
}

func newWatchCollector(constLabels prometheus.Labels, timeout time.Duration) *watchCollector {
	return &watchCollector{
		timeout: timeout,
		descs: [2]*prometheus.Desc{
			prometheus.NewDesc(namespace+"_slots_in_use",
				"Slots of a concurrent-user pool held right now, across all replicas.", []string{"pool"}, constLabels),
			prometheus.NewDesc(namespace+"_endpoint_state",
				`State of an LLM endpoint across all replicas: 1 for the state it is in, 0 for the others; "closed" (in use), "half-open" (one probe may test it), "open" (backing off).`, []string{"endpoint", "state"}, constLabels),
		},
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "watch_errors_total",
			Help:        "Scrapes at which a WatchSlots or WatchEndpoint function failed or timed out; its gauge was left out.",
			ConstLabels: constLabels,
		}, []string{"watch", "name"}),
		fns: [2]map[string]func(context.Context) (float64, error){{}, {}},
	}
}

func (w *watchCollector) add(kind watchKind, name string, fn func(context.Context) (float64, error)) error {
	if name == "" {
		return fmt.Errorf("metrics: empty %s name", watchKindNames[kind])
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.fns[kind][name]; dup {
		return fmt.Errorf("metrics: %s %q is watched already", watchKindNames[kind], name)
	}
	w.fns[kind][name] = fn
	return nil
}

// Describe implements prometheus.Collector.
func (w *watchCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range w.descs {
		ch <- d
	}
	w.errs.Describe(ch)
}

type watchResult struct {
	kind  watchKind
	name  string
	value float64
	err   error
}

// Collect implements prometheus.Collector: it runs every watch function at
// once, each bounded by the timeout, so one slow Redis call costs a scrape
// at most one timeout.
func (w *watchCollector) Collect(ch chan<- prometheus.Metric) {
	type job struct {
		kind watchKind
		name string
		fn   func(context.Context) (float64, error)
	}
	var jobs []job
	w.mu.Lock()
	for k, m := range w.fns {
		for name, fn := range m {
			jobs = append(jobs, job{watchKind(k), name, fn})
		}
	}
	w.mu.Unlock()
	// A stable order keeps the exposition deterministic.
	sort.Slice(jobs, func(i, j int) bool {
		if jobs[i].kind != jobs[j].kind {
			return jobs[i].kind < jobs[j].kind
		}
		return jobs[i].name < jobs[j].name
	})

	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	// Buffered so that a function that ignores ctx and returns late does
	// not block its goroutine forever.
	results := make(chan watchResult, len(jobs))
	for _, j := range jobs {
		go func() {
			v, err := j.fn(ctx)
			results <- watchResult{j.kind, j.name, v, err}
		}()
	}
	got := make(map[watchKind]map[string]watchResult, 2)
	keep := func(r watchResult) {
		if got[r.kind] == nil {
			got[r.kind] = map[string]watchResult{}
		}
		got[r.kind][r.name] = r
	}
wait:
	for range jobs {
		select {
		case r := <-results:
			keep(r)
		case <-ctx.Done():
			break wait
		}
	}
	// Results that arrived together with the deadline still count.
	for drained := false; !drained; {
		select {
		case r := <-results:
			keep(r)
		default:
			drained = true
		}
	}
	for _, j := range jobs {
		r, ok := got[j.kind][j.name]
		if !ok || r.err != nil || math.IsNaN(r.value) {
			w.errs.WithLabelValues(watchKindNames[j.kind], j.name).Inc()
			continue
		}
		if j.kind == watchEndpoint {
			for _, s := range endpointStates {
				v := 0.0
				if float64(s) == r.value {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(w.descs[j.kind], prometheus.GaugeValue, v, j.name, s.String())
			}
			continue
		}
		ch <- prometheus.MustNewConstMetric(w.descs[j.kind], prometheus.GaugeValue, r.value, j.name)
	}
	w.errs.Collect(ch)
}
