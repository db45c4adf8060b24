package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/limiter"
)

// ObserveEviction records what an eviction check found. It implements
// limiter.EvictionObserver; a failed check leaves the last values.
func (o *Observer) ObserveEviction(e limiter.Eviction, err error) {
	if o == nil || err != nil {
		return
	}
	o.eviction.set(e)
}

// WatchEviction makes each scrape run fn, typically a Limiter's
// CheckEviction (one INFO round trip per master, bounded by the watch
// timeout), so that floodgate_redis_eviction_unsafe and
// floodgate_redis_evicted_keys_total are current. While fn fails, the last
// values stay and floodgate_redis_eviction_check_errors_total grows.
func (o *Observer) WatchEviction(fn func(ctx context.Context) (limiter.Eviction, error)) error {
	if o == nil {
		return errors.New("metrics: WatchEviction on a nil Observer")
	}
	if fn == nil {
		return errors.New("metrics: WatchEviction: nil function")
	}
	o.eviction.mu.Lock()
	defer o.eviction.mu.Unlock()
	if o.eviction.fn != nil {
		return errors.New("metrics: eviction is watched already")
	}
	o.eviction.fn = fn
	return nil
}

// evictionCollector produces the eviction metrics from the last check.
type evictionCollector struct {
	timeout time.Duration
	unsafe  *prometheus.Desc
	evicted *prometheus.Desc
	errs    prometheus.Counter

	mu    sync.Mutex
	known bool
	last  limiter.Eviction
	fn    func(context.Context) (limiter.Eviction, error)
}

func newEvictionCollector(constLabels prometheus.Labels, timeout time.Duration) *evictionCollector {
	return &evictionCollector{
		timeout: timeout,
		unsafe: prometheus.NewDesc(namespace+"_redis_eviction_unsafe",
			"1 when Redis's maxmemory-policy can evict Floodgate's keys (every key has a TTL, so volatile-* and allkeys-* can; set noeviction), 0 when it cannot.",
			nil, constLabels),
		evicted: prometheus.NewDesc(namespace+"_redis_evicted_keys_total",
			"Keys Redis evicted since it started (INFO stats evicted_keys, summed over a Cluster's masters), Floodgate's or not.",
			nil, constLabels),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "redis_eviction_check_errors_total",
			Help:        "Scrapes at which WatchEviction's check failed or timed out; the eviction metrics kept their last values.",
			ConstLabels: constLabels,
		}),
	}
}

func (c *evictionCollector) set(e limiter.Eviction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.known, c.last = true, e
}

// Describe implements prometheus.Collector.
func (c *evictionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.unsafe
	ch <- c.evicted
	c.errs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *evictionCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	fn := c.fn
	c.mu.Unlock()
	if fn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		e, err := fn(ctx)
		cancel()
		if err != nil {
			c.errs.Inc()
		} else {
			c.set(e)
		}
	}
	c.mu.Lock()
	known, e := c.known, c.last
	c.mu.Unlock()
	c.errs.Collect(ch)
	if !known {
		return
	}
	unsafe := 0.0
	if e.Unsafe {
		unsafe = 1
	}
	ch <- prometheus.MustNewConstMetric(c.unsafe, prometheus.GaugeValue, unsafe)
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(e.EvictedKeys))
}
