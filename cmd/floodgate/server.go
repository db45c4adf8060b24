package main

import (
	"context"
	"crypto/sha256"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/sentpath"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

// server is floodgate serve's HTTP handler over one Limiter: the
// middleware is in middleware.go, error answers in errors.go, the routes
// in routes.go. It is safe for concurrent use.
type server struct {
	lim      *limiter.Limiter
	rdb      redis.UniversalClient // for /readyz
	cfg      limiter.Config
	set      httpSettings
	tokenSum [sha256.Size]byte
	// waits holds one token per request waiting; full means 429.
	waits chan struct{}
	// buckets holds a Bucket per configured API, built once: the only
	// names Bucket accepts without settings.
	buckets map[string]*limiter.Bucket
	// pools and breakers hold at most set.MaxNames handles each.
	pools    *handles[limiter.Slots]
	breakers *handles[limiter.Backoff]
	// budget is "llm", nil unless FLOODGATE_USER_TOKEN_BUDGET is set: the
	// only one served, so a misspelt name is a 404, not a fresh budget.
	budget *limiter.Budget
	// The RateLimit headers' quotas (ratelimit.go).
	userQuota    quota
	bucketQuotas map[string]quota
	budgetQuota  quota
	slotsQuota   quota
	metrics      *metrics.HTTP
	gather       prometheus.Gatherer
	// draining ends when shutdown begins: waits answer what they have.
	draining context.Context
	logf     func(format string, a ...any)
	mux      *http.ServeMux
}

// newServer builds the handler. reg receives the HTTP metrics and is
// served on /metrics (give the same registry to the limiter's Observer).
func newServer(lim *limiter.Limiter, rdb redis.UniversalClient, set httpSettings, reg *prometheus.Registry, draining context.Context, logf func(string, ...any)) (*server, error) {
	hm, err := metrics.NewHTTP(reg)
	if err != nil {
		return nil, err
	}
	s := &server{
		lim: lim, rdb: rdb, cfg: lim.Config(), set: set,
		waits:   make(chan struct{}, set.MaxWaits),
		metrics: hm, gather: reg, draining: draining, logf: logf,
		mux: http.NewServeMux(),
	}
	if set.Token != "" {
		s.tokenSum = sha256.Sum256([]byte(set.Token))
	}
	s.buckets = make(map[string]*limiter.Bucket, len(s.cfg.APIRates))
	s.bucketQuotas = make(map[string]quota, len(s.cfg.APIRates))
	for name := range s.cfg.APIRates {
		// One that fails is refused per request, with the library's reason.
		if b, err := lim.Bucket(name, limiter.BucketSettings{}); err == nil {
			s.buckets[name], s.bucketQuotas[name] = b, bucketQuota(b)
		}
	}
	maxNames := set.maxNames()
	s.pools = newHandles("slot pool", maxNames, func(name string) (*limiter.Slots, error) {
		return lim.Slots(name, limiter.SlotsSettings{})
	})
	s.breakers = newHandles("backoff", maxNames, func(name string) (*limiter.Backoff, error) {
		return lim.Backoff(name, limiter.BackoffSettings{})
	})
	s.userQuota = userQuota(s.cfg)
	s.slotsQuota = slotsQuota(s.cfg)
	if s.cfg.UserTokenBudget > 0 {
		if s.budget, err = lim.Budget(budgetName, limiter.BudgetSettings{}); err != nil {
			return nil, err
		}
		s.budgetQuota = budgetQuota(s.budget)
	}
	s.routes()
	return s, nil
}

// handlerFunc is a route: it writes its answer, or returns an error that
// wrap turns into {"error": ...} with the matching status.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// routes registers every route, and for each path a method-less pattern
// answering 405 with Allow, so wrong methods get JSON too.
func (s *server) routes() {
	methods := map[string][]string{"/metrics": {"GET"}}
	for _, rt := range s.routeTable() {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt.h))
		methods[rt.path] = append(methods[rt.path], rt.method)
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	for p, ms := range methods {
		if slices.Contains(ms, "GET") {
			ms = append(ms, "HEAD")
		}
		allow := strings.Join(ms, ", ")
		s.mux.Handle(p, s.wrap(func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allow)
			return httpError(http.StatusMethodNotAllowed, "method %s not allowed on %s (allowed: %s)", r.Method, p, allow)
		}))
	}
	s.mux.Handle("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return httpError(http.StatusNotFound, "no such route (docs/sidecar.md lists them)")
	}))
}

// wrap turns a handlerFunc into a Handler that maps its error.
func (s *server) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sentpath.Restore(r)
		if err := h(w, r); err != nil {
			s.writeErr(w, r, err)
		}
	})
}
