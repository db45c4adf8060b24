package main

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// Every error the server writes is {"error": "..."} (errorBody), from the
// routes (writeErr), the middleware (writeError) and, for what net/http
// answers before any handler runs, the connection (internal/listen).

// errorBody is the one error shape.
type errorBody struct {
	Error string `json:"error"`
}

// apiError is an answer with a status other than 500.
type apiError struct {
	status int
	msg    string
	// retryAfter, when set, is sent as Retry-After (a 429).
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

// httpError is an answer with status and a message naming what is wrong.
func httpError(status int, format string, a ...any) error {
	return &apiError{status: status, msg: fmt.Sprintf(format, a...)}
}

// badRequest is a 400 naming what is wrong.
func badRequest(format string, a ...any) error {
	return httpError(http.StatusBadRequest, format, a...)
}

// statusClientGone is what the metrics count for a request whose client
// went away (nginx's 499): nobody reads the answer, and it is no server
// fault.
const statusClientGone = 499

// writeErr answers a route's error: an apiError's own status (bad
// requests, a large body, too many waits), 400 for bad input (the
// library's sentinels), 409 for a lost lease or a stale reservation, 503 when Redis cannot be
// reached by a call without a fallback, 500 otherwise (logged). Messages
// about Redis say no more than that: its errors quote addresses and keys.
func (s *server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	if ae, ok := errors.AsType[*apiError](err); ok {
		if ae.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(ae.retryAfter), 10))
		}
		writeError(w, ae.status, ae.msg)
		return
	}
	switch {
	case errors.Is(err, limiter.ErrInvalidUser), errors.Is(err, limiter.ErrInvalidName), errors.Is(err, limiter.ErrInvalidArgument):
		writeError(w, http.StatusBadRequest, errText(err))
	case errors.Is(err, limiter.ErrLeaseLost), errors.Is(err, limiter.ErrStaleReservation):
		writeError(w, http.StatusConflict, errText(err))
	case r.Context().Err() != nil:
		writeError(w, statusClientGone, "request cancelled")
	case errors.Is(err, limiter.ErrRedisUnavailable), limiter.IsUnavailable(err):
		writeError(w, http.StatusServiceUnavailable, "redis unavailable, and this call has no fallback or its policy fails closed")
	default:
		s.logf("%s: %s", routeOf(r), errText(err))
		writeError(w, http.StatusInternalServerError, errText(err))
	}
}

// writeError writes {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{msg})
}
