package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTP records what an HTTP server in front of a limiter (floodgate serve)
// answers:
//
//	floodgate_http_requests_total{route,code}        counter
//	floodgate_http_request_duration_seconds{route}   histogram
//
// route is the server's route pattern ("POST /v1/users/{user}/allow"),
// never the raw path, so user ids do not become label values; requests no
// route matched share one route label of the caller's choosing. Build it
// with NewHTTP; a nil *HTTP ignores everything. It is safe for concurrent
// use.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// HTTPBuckets are the request-duration histogram's upper bounds in
// seconds: 100 µs (a loopback request with one Redis round trip takes a
// few hundred) doubling up to ~52 s, past the longest wait a server allows
// by default (30 s).
var HTTPBuckets = prometheus.ExponentialBuckets(100e-6, 2, 20)

// NewHTTP registers the HTTP metrics with reg (the default registerer
// when nil). Registering twice on one registry returns the same metrics.
func NewHTTP(reg prometheus.Registerer) (*HTTP, error) {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	r := registrar{reg: reg}
	h := &HTTP{
		requests: register(&r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"})),
		duration: register(&r, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time from reading an HTTP request's headers to writing its answer, by route pattern.",
			Buckets: HTTPBuckets,
		}, []string{"route"})),
	}
	if r.err != nil {
		return nil, r.err
	}
	return h, nil
}

// Observe records one answered request.
func (h *HTTP) Observe(route string, code int, took time.Duration) {
	if h == nil {
		return
	}
	h.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	h.duration.WithLabelValues(route).Observe(took.Seconds())
}
