package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

// server is floodgate serve's HTTP handler over one Limiter. It is safe
// for concurrent use.
type server struct {
	lim      *limiter.Limiter
	rdb      redis.UniversalClient // for /readyz
	cfg      limiter.Config
	set      httpSettings
	tokenSum [sha256.Size]byte
	// waits holds one token per request waiting (bucket wait, slot
	// acquire with wait); a full channel means 429.
	waits chan struct{}
	// buckets holds a Bucket per configured API, built once: they are
	// immutable, and the only names Bucket accepts without settings.
	buckets map[string]*limiter.Bucket
	metrics *metrics.HTTP
	gather  prometheus.Gatherer
	// draining ends when shutdown begins: waits stop at once and answer
	// with what they have, so in-flight requests finish within the bound.
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
	for name := range s.cfg.APIRates {
		// One that fails is built (and refused) per request, as before.
		if b, err := lim.Bucket(name, limiter.BucketSettings{}); err == nil {
			s.buckets[name] = b
		}
	}
	s.routes()
	return s, nil
}

// handlerFunc is a route: it writes its answer, or returns an error that
// ServeHTTP turns into {"error": ...} with the matching status.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// routes registers every route, and for each path a method-less pattern
// answering 405 with Allow, so wrong methods get JSON too.
func (s *server) routes() {
	type route struct {
		method, path string
		h            handlerFunc
	}
	table := []route{
		{"POST", "/v1/users/{user}/allow", s.userAllow},
		{"POST", "/v1/allow-many", s.allowMany},
		{"GET", "/v1/users/{user}", s.userPeek},
		{"DELETE", "/v1/users/{user}", s.userReset},
		{"POST", "/v1/backoff/{name}/pick", s.backoffPick},
		{"POST", "/v1/backoff/{name}/endpoints/{endpoint}/check", s.backoffCheck},
		{"POST", "/v1/backoff/{name}/endpoints/{endpoint}/failure", s.backoffFailure},
		{"POST", "/v1/backoff/{name}/endpoints/{endpoint}/success", s.backoffSuccess},
		{"POST", "/v1/backoff/{name}/endpoints/{endpoint}/abandon", s.backoffAbandon},
		{"GET", "/v1/backoff/{name}/endpoints/{endpoint}", s.backoffStatus},
		{"POST", "/v1/buckets/{name}/allow", s.bucketAllow},
		{"POST", "/v1/buckets/{name}/wait", s.bucketWait},
		{"POST", "/v1/slots/{name}/acquire", s.slotsAcquire},
		{"POST", "/v1/slots/{name}/refresh", s.slotsRefresh},
		{"POST", "/v1/slots/{name}/release", s.slotsRelease},
		{"GET", "/v1/slots/{name}", s.slotsStatus},
		{"GET", "/healthz", s.healthz},
		{"GET", "/readyz", s.readyz},
	}
	methods := map[string][]string{}
	var paths []string
	for _, rt := range table {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt.h))
		if methods[rt.path] == nil {
			paths = append(paths, rt.path)
		}
		methods[rt.path] = append(methods[rt.path], rt.method)
	}
	metricsHandler := promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	s.mux.Handle("GET /metrics", metricsHandler)
	methods["/metrics"] = []string{"GET"}
	paths = append(paths, "/metrics")
	for _, p := range paths {
		ms := append([]string(nil), methods[p]...)
		if slices.Contains(ms, "GET") {
			ms = append(ms, "HEAD")
		}
		allow := strings.Join(ms, ", ")
		s.mux.Handle(p, s.wrap(func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allow)
			return &apiError{status: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, p, allow)}
		}))
	}
	s.mux.Handle("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return &apiError{status: http.StatusNotFound, msg: "no such route (docs/sidecar.md lists them)"}
	}))
}

// ServeHTTP runs the middleware: metrics and panic recovery outermost,
// then path checks, auth and the body limit, then the route.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Pooled: one allocation fewer per request. Nothing keeps rec past
	// the handler's return (waits end before their handler returns).
	rec := recorders.Get().(*recorder)
	rec.ResponseWriter = w
	defer func() {
		if v := recover(); v != nil {
			// One line, no stack: the panic value may not be safe to show
			// the caller, and a stack helps nobody who reads the answer.
			s.logf("panic serving %s %s: %v", r.Method, routeOf(r), v)
			if !rec.wrote {
				writeError(rec, http.StatusInternalServerError, "internal error")
			}
		}
		s.metrics.Observe(routeOf(r), rec.code(), time.Since(start))
		*rec = recorder{}
		recorders.Put(rec)
	}()
	// Auth by default: every route but health and readiness, read from
	// the decoded path, which the mux routes on (the escaped one let
	// /%761/... reach /v1/ routes without a token).
	open := r.URL.Path == "/healthz" || r.URL.Path == "/readyz"
	if !open && s.set.Token != "" && !s.authorized(r) {
		rec.Header().Set("WWW-Authenticate", `Bearer realm="floodgate"`)
		writeError(rec, http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer <FLOODGATE_HTTP_TOKEN>)")
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v1/") && badSegments(r.URL.EscapedPath()) {
		writeError(rec, http.StatusBadRequest, "path has an empty, '.' or '..' segment: user ids and names must be non-empty, and '.' is sent as %2E")
		return
	}
	// No body (Content-Length: 0) needs no limit.
	if r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(rec, r.Body, maxBody)
	}
	s.mux.ServeHTTP(rec, r)
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

// routeOf is the metrics label of r: its pattern, never the raw path.
func routeOf(r *http.Request) string {
	if r.Pattern == "" || r.Pattern == "/" {
		return "other"
	}
	return r.Pattern
}

// badSegments reports empty, "." and ".." segments, which ServeMux would
// answer with a redirect to another path (another user).
func badSegments(path string) bool {
	// Walks the segments of path[1:] without splitting (no allocation).
	for rest := path[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		// A trailing slash is no route (404), not an empty id.
		if (seg == "" && more) || seg == "." || seg == ".." {
			return true
		}
		if !more {
			return false
		}
		rest = after
	}
}

// authorized compares the bearer token in constant time: both sides are
// hashed first, so neither the token's length nor its bytes leak.
func (s *server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	// The scheme is case-insensitive (RFC 9110).
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(h[7:])))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

// recorder remembers the status for metrics and whether anything was
// written (after a panic, an answer can only be added if not).
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) code() int {
	if !r.wrote {
		return http.StatusOK
	}
	return r.status
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// apiError is an answer with a status other than 500.
type apiError struct {
	status int
	msg    string
	// retryAfter, when set, is sent as Retry-After (a 429).
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

// wrap turns a handlerFunc into a Handler that maps its error.
func (s *server) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			status, msg := s.errorStatus(w, r, err)
			writeError(w, status, msg)
		}
	})
}

// errorStatus maps an error to its status and message: an apiError's own
// (bad requests, a large body, too many waits), 400 for bad input (the
// library's sentinels), 409 for a lost lease, 503 when Redis cannot be
// reached by a call without a fallback, 500 otherwise (logged). An
// apiError's Retry-After goes on w's header.
func (s *server) errorStatus(w http.ResponseWriter, r *http.Request, err error) (int, string) {
	if ae, ok := errors.AsType[*apiError](err); ok {
		if ae.retryAfter > 0 {
			w.Header()["Retry-After"] = headerInt(retryAfterSeconds(ae.retryAfter))
		}
		return ae.status, ae.msg
	}
	msg := errText(err)
	switch {
	case errors.Is(err, limiter.ErrInvalidUser), errors.Is(err, limiter.ErrInvalidName), errors.Is(err, limiter.ErrInvalidArgument):
		return http.StatusBadRequest, msg
	case errors.Is(err, limiter.ErrLeaseLost):
		return http.StatusConflict, msg
	case r.Context().Err() != nil:
		// The client went away: nobody reads this, and it is no server
		// fault worth a log line.
		return http.StatusServiceUnavailable, "request cancelled"
	case errors.Is(err, limiter.ErrRedisUnavailable):
		// Its message says "redis unavailable" already.
		return http.StatusServiceUnavailable, msg
	case limiter.IsUnavailable(err):
		return http.StatusServiceUnavailable, "redis unavailable: " + msg
	}
	s.logf("%s %s: %s", r.Method, routeOf(r), msg)
	return http.StatusInternalServerError, msg
}

// writeError writes {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	b := make([]byte, 0, 32+len(msg))
	b = append(b, `{"error":`...)
	b = appendJSONString(b, msg)
	b = append(b, "}\n"...)
	writeJSON(w, status, b)
}

// appendJSONString appends s as a JSON string. strconv.AppendQuote writes Go
// syntax (\a, \v, \x00, \xff), which JSON parsers reject; invalid UTF-8
// becomes U+FFFD here, as JSON has no way to carry it.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// Shared header values: assigning them skips Set's canonicalization and
// allocation on the hot path (net/http only reads them).
var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
)

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Cache-Control"] = noStore
	h["Content-Length"] = headerInt(len(body))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// smallInts holds header values for 0..len-1, built once, so that
// Content-Length and Retry-After cost no allocation on the hot path
// (net/http only reads them).
var smallInts = func() [][]string {
	vs := make([][]string, 4096)
	for i := range vs {
		vs[i] = []string{strconv.Itoa(i)}
	}
	return vs
}()

// headerInt is n as a header value.
func headerInt[T int | int64](n T) []string {
	if n >= 0 && int64(n) < int64(len(smallInts)) {
		return smallInts[n]
	}
	return []string{strconv.FormatInt(int64(n), 10)}
}

// buffers holds answer buffers: net/http copies what Write gets, so a
// buffer is free again once Write returns.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// ceilMs rounds up to whole milliseconds, so a client that waits the
// given time is never early.
func ceilMs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// decisionExtra adds fields to a decision's JSON.
type decisionExtra struct {
	backoff  bool   // add "probe" and, with it, "token"
	pick     bool   // add "endpoint"
	endpoint string // for pick
}

// writeDecision writes a Decision as JSON, by hand: it is the hot path.
// A denial carries Retry-After in whole seconds, rounded up (at least 1).
// A fail-closed denial (Redis down) is a 503 with an "error" besides.
func writeDecision(w http.ResponseWriter, d limiter.Decision, x decisionExtra) {
	buf := buffers.Get().(*[]byte)
	b := appendDecision((*buf)[:0], d, x)
	status := http.StatusOK
	if d.Reason == limiter.ReasonRedisDown {
		status = http.StatusServiceUnavailable
		b = append(b, `,"error":"redis unavailable and the policy fails closed"`...)
	}
	b = append(b, "}\n"...)
	if !d.Allowed {
		w.Header()["Retry-After"] = headerInt(retryAfterSeconds(d.RetryAfter))
	}
	writeJSON(w, status, b)
	*buf = b
	buffers.Put(buf)
}

// appendDecision appends d's JSON object without its closing brace.
func appendDecision(b []byte, d limiter.Decision, x decisionExtra) []byte {
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, d.Allowed)
	b = append(b, `,"reason":"`...)
	b = append(b, d.Reason.String()...)
	b = append(b, `","remaining":`...)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	b = append(b, `,"retry_after_ms":`...)
	b = strconv.AppendInt(b, ceilMs(d.RetryAfter), 10)
	b = append(b, `,"reset_after_ms":`...)
	b = strconv.AppendInt(b, ceilMs(d.ResetAfter), 10)
	b = append(b, `,"degraded":`...)
	b = strconv.AppendBool(b, d.Degraded)
	b = append(b, `,"cached":`...)
	b = strconv.AppendBool(b, d.Cached)
	if x.backoff {
		b = append(b, `,"probe":`...)
		b = strconv.AppendBool(b, d.Probe)
		if d.Probe {
			b = append(b, `,"token":`...)
			b = strconv.AppendQuote(b, d.Token)
		}
	}
	if x.pick {
		b = append(b, `,"endpoint":`...)
		b = appendJSONString(b, x.endpoint)
	}
	return b
}

// retryAfterSeconds is the Retry-After header: whole seconds, rounded up,
// at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	return nil
}

// readyz answers 200 when Redis answers PING within RedisTimeout, with
// what Redis's maxmemory-policy means for the limits (limiter.Eviction).
func (s *server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RedisTimeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "redis: "+scrub(err.Error()))
		return nil
	}
	body := []byte(`{"status":"ready"}` + "\n")
	// Redis's maxmemory-policy, read again (one INFO round trip): an
	// unsafe one forgets limits, but Redis still serves, so still 200.
	if e, err := s.lim.CheckEviction(ctx); err == nil {
		body, _ = json.Marshal(map[string]any{"status": "ready", "maxmemory_policy": e.Policy,
			"eviction_unsafe": e.Unsafe, "evicted_keys": e.EvictedKeys, "warning": e.Warning()})
		body = append(body, '\n')
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}
