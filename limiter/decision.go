package limiter

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// Decision is the answer to one request.
//
// With the defaults (10 s cooldown, 20 per hour), a user's first
// message at 12:00:00 gets {Allowed: true, Remaining: 19, ResetAfter: 1h};
// a second message at 12:00:04 gets {Allowed: false, Reason: ReasonCooldown,
// Remaining: 19, RetryAfter: 6s, ResetAfter: 59m56s}.
type Decision struct {
	// Allowed reports whether the request may go ahead. When it is true the
	// request has been counted.
	Allowed bool
	// Reason says which limit denied the request; ReasonNone when allowed.
	// When several limits deny, it is the one with the longest wait.
	Reason Reason
	// Remaining is how many more requests the limit would admit right now
	// after this decision: 19 after a user's first message with a limit of
	// 20. It is Unlimited (-1) when the policy keeps no count (cooldown
	// only).
	Remaining int
	// RetryAfter is 0 when allowed; otherwise the shortest wait after which
	// the same request would be allowed, if nothing else happens meanwhile:
	// 6s for a message 4 s into a 10 s cooldown.
	RetryAfter time.Duration
	// ResetAfter is how long until the policy's state is empty again (the
	// window holds no request, the cooldown is over): 1h right after an
	// accepted message with a 1 h window.
	ResetAfter time.Duration
	// Degraded is true when Redis could not be reached and the decision
	// followed the policy's FailureMode (local limits, open or closed)
	// instead of the shared state.
	Degraded bool
	// Cached is true when this process answered a denial without a Redis
	// round trip: a repeat denial from its local deny cache, or a user
	// still held by requests its FailLocal fallback admitted during an
	// outage, which Redis does not know about.
	Cached bool
	// Probe is true when Backoff.Check or Pick admitted this caller as the
	// endpoint's single half-open probe: its delay ran out, and every other
	// caller on every replica is denied (ReasonProbing) until this one
	// reports Success or Failure, hands the probe back with Abandon, or its
	// lease (ResetAfter) ends. Allowed is true; Remaining is 0.
	//
	// With a 5 s delay and a 30 s lease, an endpoint that failed at 12:00:00
	// answers a Check at 12:00:05 with {Allowed: true, Probe: true,
	// Token: "9f86d081884c7d65", ResetAfter: 30s}; a second Check at
	// 12:00:06 gets {Reason: ReasonProbing, RetryAfter: 29s, ResetAfter: 29s}.
	Probe bool
	// Token names the probe, for Backoff.Abandon, when Probe is true; or
	// the reservation an allowed Budget.Reserve made, for Budget.Settle
	// and Cancel. It is opaque and URL-safe.
	Token string
}

// Unlimited is Decision.Remaining when the policy keeps no count.
const Unlimited = -1

// Reason says why a request was denied.
type Reason uint8

const (
	// ReasonNone: the request was allowed.
	ReasonNone Reason = iota
	// ReasonCooldown: the user's previous accepted request is more recent
	// than Config.UserCooldown.
	ReasonCooldown
	// ReasonWindow: the user already has MaxRequestsPerUserHour requests in
	// the sliding window.
	ReasonWindow
	// ReasonRate: an external API's rate (Bucket) is used up.
	ReasonRate
	// ReasonBackoff: an LLM endpoint failed and is backing off.
	ReasonBackoff
	// ReasonProbing: an endpoint's backoff ran out and another caller holds
	// the single half-open probe.
	ReasonProbing
	// ReasonSlots: every concurrent-user slot is taken.
	ReasonSlots
	// ReasonRedisDown: Redis could not be reached and the policy fails
	// closed.
	ReasonRedisDown
	// ReasonBudget: the user's units (LLM tokens) in a Budget's window
	// would exceed its Limit.
	ReasonBudget
)

var reasonNames = [...]string{"none", "cooldown", "window", "rate", "backoff", "probing", "slots", "redis_down", "budget"}

// String returns a short lower-case name, stable for logs and metric labels.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// replyDecision reads the five integers a script's decision is made of, in
// this order: allowed (1 or 0), reason, remaining, retry-after ms and
// reset-after ms.
func replyDecision(r []int64) Decision {
	return Decision{
		Allowed:    r[0] == 1,
		Reason:     Reason(r[1]),
		Remaining:  int(r[2]),
		RetryAfter: fromMs(r[3]),
		ResetAfter: fromMs(r[4]),
	}
}

// newToken draws the 16 hex digits a Decision.Token is built on: a
// Backoff probe's token, a Budget reservation's nonce. One allocation,
// where fmt's %016x takes two and a trip through the formatter.
func newToken() string {
	const digits = "0123456789abcdef"
	var b [16]byte
	v := rand.Uint64()
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b[:])
}

// isToken reports whether t has the form newToken gives.
func isToken(t string) bool {
	if len(t) != 16 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
