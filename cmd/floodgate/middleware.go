package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ServeHTTP runs the middleware: metrics and panic recovery outermost,
// then auth, path checks and the body limit, then the route.
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
	if msg := badTarget(r); msg != "" {
		writeError(rec, http.StatusBadRequest, msg)
		return
	}
	r = routeSlashes(r)
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

// badTarget says what is wrong with a request target ServeMux would
// answer with a redirect or plain text: one that is no path ("*"), and
// empty, "." and ".." segments anywhere (a redirect to another path,
// another user).
func badTarget(r *http.Request) string {
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		return "request target must be a path starting with '/'"
	}
	for rest := path[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		// A trailing slash is no route (404), not an empty id.
		if (seg == "" && more) || seg == "." || seg == ".." {
			return "path has an empty, '.' or '..' segment: user ids and names must be non-empty, and '.' is sent as %2E"
		}
		if !more {
			return ""
		}
		rest = after
	}
}

// Go's ServeMux (1.26) mistakes a path segment that decodes to "/" (sent
// as %2F) for a trailing slash and answers 404. Such a segment is routed
// as slashStandIn, and the route's values are read again from the path as
// sent (restoreSlashes), so a name or id of exactly "/" works like any
// other.
const slashStandIn = "_"

type sentPathKey struct{}

// routeSlashes returns r with each %2F segment replaced by slashStandIn,
// remembering the path as sent; r itself when it has none.
func routeSlashes(r *http.Request) *http.Request {
	sent := r.URL.EscapedPath()
	if !strings.Contains(sent, "/%2F") && !strings.Contains(sent, "/%2f") {
		return r
	}
	segs := strings.Split(sent, "/")
	changed := false
	for i, seg := range segs {
		if strings.EqualFold(seg, "%2F") {
			segs[i], changed = slashStandIn, true
		}
	}
	if !changed {
		return r
	}
	r = r.WithContext(context.WithValue(r.Context(), sentPathKey{}, sent))
	u := *r.URL
	u.RawPath = strings.Join(segs, "/")
	u.Path, _ = url.PathUnescape(u.RawPath) // it was a valid path before
	r.URL = &u
	return r
}

// restoreSlashes sets r's path values from the path as sent, once the mux
// has matched r's pattern (a no-op unless routeSlashes changed r).
func restoreSlashes(r *http.Request) {
	sent, ok := r.Context().Value(sentPathKey{}).(string)
	if !ok {
		return
	}
	_, pattern, _ := strings.Cut(r.Pattern, " ")
	want, got := strings.Split(pattern, "/"), strings.Split(sent, "/")
	for i, p := range want {
		if name, ok := strings.CutPrefix(p, "{"); ok && i < len(got) {
			if v, err := url.PathUnescape(got[i]); err == nil {
				r.SetPathValue(strings.TrimSuffix(name, "}"), v)
			}
		}
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
