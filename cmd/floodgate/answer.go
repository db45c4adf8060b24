package main

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// Answers: each route's JSON as a type, written by encoding/json but for
// a decision's (decisionBody.appendJSON).

// decisionBody is a decision, for every policy.
type decisionBody struct {
	Allowed      bool   `json:"allowed"`
	Reason       string `json:"reason"`
	Remaining    int    `json:"remaining"`
	RetryAfterMs int64  `json:"retry_after_ms"`
	ResetAfterMs int64  `json:"reset_after_ms"`
	Degraded     bool   `json:"degraded"`
	Cached       bool   `json:"cached"`
	decisionExtra
}

// decisionExtra holds what only some decisions carry: Probe on backoff
// decisions, Token when Probe is true; Endpoint, the one a pick chose;
// Reservation, what an allowed budget reserve holds; Error, why a
// fail-closed denial or one user's failure in an allow-many.
type decisionExtra struct {
	Probe       *bool   `json:"probe,omitempty"`
	Token       string  `json:"token,omitempty"`
	Endpoint    *string `json:"endpoint,omitempty"`
	Reservation string  `json:"reservation,omitempty"`
	Error       string  `json:"error,omitempty"`
}

func newDecisionBody(d limiter.Decision) decisionBody {
	return decisionBody{
		Allowed: d.Allowed, Reason: d.Reason.String(), Remaining: d.Remaining,
		RetryAfterMs: ceilMs(d.RetryAfter), ResetAfterMs: ceilMs(d.ResetAfter),
		Degraded: d.Degraded, Cached: d.Cached,
	}
}

// backoffBody is a backoff decision: with probe (and its token).
func backoffBody(d limiter.Decision) decisionBody {
	b := newDecisionBody(d)
	b.Probe = &d.Probe
	if d.Probe {
		b.Token = d.Token
	}
	return b
}

// peekBody is a user's state: GET /v1/users/{user} and floodgate user
// --json.
type peekBody struct {
	User           string `json:"user"`
	Remaining      int    `json:"remaining"`
	RetryAfterMs   int64  `json:"retry_after_ms"`
	Reason         string `json:"reason"`
	CooldownLeftMs int64  `json:"cooldown_left_ms"`
	Entries        int    `json:"entries"`
	ResetAfterMs   int64  `json:"reset_after_ms"`
}

func newPeekBody(user string, st limiter.UserStatus) peekBody {
	return peekBody{
		User: user, Remaining: st.Remaining, RetryAfterMs: ceilMs(st.RetryAfter), Reason: st.Reason.String(),
		CooldownLeftMs: ceilMs(st.CooldownLeft), Entries: st.Entries, ResetAfterMs: ceilMs(st.ResetAfter),
	}
}

// endpointBody is an endpoint's backoff state: GET
// /v1/backoff/{name}/endpoints/{endpoint} and the rows of floodgate
// endpoints --json (which name the endpoint).
type endpointBody struct {
	Endpoint     string `json:"endpoint,omitempty"`
	State        string `json:"state"`
	Opens        int    `json:"opens"`
	Failures     int    `json:"failures"`
	DelayMs      int64  `json:"delay_ms"`
	RetryAfterMs int64  `json:"retry_after_ms"`
	Probing      bool   `json:"probing"`
}

func newEndpointBody(st limiter.BackoffStatus) endpointBody {
	return endpointBody{
		State: st.State.String(), Opens: st.Opens, Failures: st.Failures,
		DelayMs: ceilMs(st.Delay), RetryAfterMs: ceilMs(st.RetryAfter), Probing: st.Probing,
	}
}

// budgetBody is a user's state in a budget: GET
// /v1/budgets/{name}/users/{user} and floodgate budget --json.
type budgetBody struct {
	Budget          string `json:"budget"`
	User            string `json:"user"`
	Limit           int    `json:"limit"`
	WindowMs        int64  `json:"window_ms"`
	Spent           int    `json:"spent"`
	Reserved        int    `json:"reserved"`
	Reservations    int    `json:"reservations"`
	Remaining       int    `json:"remaining"`
	OldestAgesOutMs int64  `json:"oldest_ages_out_ms"`
	ResetAfterMs    int64  `json:"reset_after_ms"`
}

func newBudgetBody(b *limiter.Budget, user string, st limiter.BudgetStatus) budgetBody {
	limit, window := b.Limit()
	return budgetBody{
		Budget: b.Name(), User: user, Limit: limit, WindowMs: ceilMs(window),
		Spent: st.Spent, Reserved: st.Reserved, Reservations: st.Reservations, Remaining: st.Remaining,
		OldestAgesOutMs: ceilMs(st.OldestAgesOut), ResetAfterMs: ceilMs(st.ResetAfter),
	}
}

// acquireBody answers a slot acquire: a lease, or why not and when to
// try again.
type acquireBody struct {
	Acquired     bool   `json:"acquired"`
	Token        string `json:"token,omitempty"`
	LeaseMs      int64  `json:"lease_ms,omitempty"`
	Reason       string `json:"reason"`
	RetryAfterMs int64  `json:"retry_after_ms"`
	Degraded     bool   `json:"degraded"`
	Error        string `json:"error,omitempty"`
}

// poolBody is a slot pool's usage: GET /v1/slots/{name} and floodgate
// slots --json (which names the pool).
type poolBody struct {
	Pool    string `json:"pool,omitempty"`
	Size    int    `json:"size"`
	InUse   int    `json:"in_use"`
	Waiting int    `json:"waiting"`
}

// writeJSON writes v with its Content-Length.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // the answer types always marshal
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	writeBody(w, status, append(b, '\n'))
}

// writeDecision writes a decision with its headers (q.set: Retry-After
// on a denial, RateLimit). A fail-closed denial (Redis down) is a 503
// with an "error" besides.
func writeDecision(w http.ResponseWriter, d limiter.Decision, body decisionBody, q quota) {
	status := http.StatusOK
	if d.Reason == limiter.ReasonRedisDown {
		status = http.StatusServiceUnavailable
		body.Error = "redis unavailable and the policy fails closed"
	}
	q.set(w.Header(), d)
	writeBody(w, status, body.appendJSON(make([]byte, 0, 256)))
}

// writeBody writes b, JSON, with the headers every answer carries.
func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"], h["Cache-Control"] = jsonType, noStore
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Header values shared by every answer, assigned to the map with
// canonical keys: Header.Set canonicalizes the key and allocates a slice
// per call, which took 3.6% of the server's CPU at 32 clients (a profile
// beside BenchmarkServeVsBaseline, docs/benchmarks.md). net/http only
// reads them.
var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
)

// appendJSON appends b as json.Marshal would, and a newline: by hand,
// because decisions are the hot path and json.Marshal costs 1.6 µs more
// per decision (1.96 against 0.32 µs), 5% of the server's CPU per
// decision (BenchmarkServeVsBaseline, docs/benchmarks.md).
// TestDecisionJSON holds the two equal.
func (b decisionBody) appendJSON(out []byte) []byte {
	out = append(out, `{"allowed":`...)
	out = strconv.AppendBool(out, b.Allowed)
	out = append(out, `,"reason":`...)
	out = strconv.AppendQuote(out, b.Reason) // reasons are plain ASCII words
	out = append(out, `,"remaining":`...)
	out = strconv.AppendInt(out, int64(b.Remaining), 10)
	out = append(out, `,"retry_after_ms":`...)
	out = strconv.AppendInt(out, b.RetryAfterMs, 10)
	out = append(out, `,"reset_after_ms":`...)
	out = strconv.AppendInt(out, b.ResetAfterMs, 10)
	out = append(out, `,"degraded":`...)
	out = strconv.AppendBool(out, b.Degraded)
	out = append(out, `,"cached":`...)
	out = strconv.AppendBool(out, b.Cached)
	if b.decisionExtra != (decisionExtra{}) {
		// Any string: json's own quoting.
		rest, _ := json.Marshal(b.decisionExtra)
		return append(append(append(out, ','), rest[1:]...), '\n')
	}
	return append(out, "}\n"...)
}

// ceilMs rounds up to whole milliseconds, so a client that waits the
// given time is never early.
func ceilMs(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// ceilSeconds rounds up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	return max(0, int64(math.Ceil(d.Seconds())))
}

// retryAfterSeconds is the Retry-After header: whole seconds, rounded up,
// at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, ceilSeconds(d))
}
