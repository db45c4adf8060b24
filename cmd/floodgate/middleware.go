package main

import (
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/floodgate/floodgate/internal/sentpath"
)

// ServeHTTP runs the middleware: metrics and panic recovery outermost,
// then auth, path checks (internal/sentpath) and the body limit, then
// the route.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	defer func() {
		if v := recover(); v != nil {
			// One line, no stack: the panic value may not be safe to show
			// the caller, and a stack helps nobody who reads the answer.
			s.logf("panic serving %s: %v", routeOf(r), v)
			if rec.status == 0 {
				writeError(rec, http.StatusInternalServerError, "internal error")
			}
		}
		s.metrics.Observe(routeOf(r), cmp.Or(rec.status, http.StatusOK), time.Since(start))
	}()
	// Auth by default: every route but health and readiness, read from
	// the decoded path, which the mux routes on (the escaped one let
	// /%761/... reach /v1/ routes without a token).
	open := r.URL.Path == "/healthz" || r.URL.Path == "/readyz"
	if !open && s.set.Token != "" && !s.authorized(r) {
		rec.Header().Set("WWW-Authenticate", `Bearer realm="floodgate"`)
		// A client without the token keeps no connection (and no file
		// descriptor) for the idle timeout.
		rec.Header().Set("Connection", "close")
		writeError(rec, http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer <FLOODGATE_HTTP_TOKEN>)")
		return
	}
	if r.Method == http.MethodConnect {
		rec.Header().Set("Allow", "GET, HEAD, POST, DELETE")
		writeError(rec, http.StatusMethodNotAllowed, "method CONNECT not allowed: this is no proxy")
		return
	}
	if err := sentpath.Check(r); err != nil {
		writeError(rec, http.StatusBadRequest, errText(err))
		return
	}
	r = sentpath.Route(r)
	// No body (Content-Length: 0) needs no limit.
	if r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(rec, r.Body, maxBody)
	}
	s.mux.ServeHTTP(rec, r)
}

// routeOf is the metrics label of r: its pattern, never the raw path.
func routeOf(r *http.Request) string {
	if r.Pattern == "" || r.Pattern == "/" {
		return "other"
	}
	return r.Pattern
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

// recorder remembers the status for metrics; 0 until anything is written
// (after a panic, an answer can only be added if nothing was).
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = cmp.Or(r.status, code)
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.status = cmp.Or(r.status, http.StatusOK)
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
