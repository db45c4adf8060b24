package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// The IETF RateLimit header fields, as in
// draft-ietf-httpapi-ratelimit-headers-11: RateLimit-Policy lists the
// quotas behind a decision, q units per w seconds; RateLimit gives what is
// left of one: r units, and t seconds until it resets (after a denial:
// until the client may try again, as Retry-After). For a user:
//
//	RateLimit-Policy: "user";q=20;w=3600, "cooldown";q=1;w=10
//	RateLimit: "user";r=19;t=3600
//
// A cooldown denial names "cooldown" in RateLimit; a breaker is no quota
// of requests, so backoff says q=1 and r=1 while calls may go, 0 while it
// waits.

// quota is what the headers say about one policy's decisions; the zero
// quota sends no RateLimit fields (a denial still gets Retry-After).
type quota struct {
	policy []string // RateLimit-Policy, built once
	name   string   // the item RateLimit names
	window int64    // seconds: t of an allowed decision without a count
	binary bool     // r is 1 or 0: allowed or not (backoff)
}

// policyItem is one item of RateLimit-Policy; w is left out when 0.
func policyItem(name string, q int, w time.Duration) string {
	item := fmt.Sprintf("%q;q=%d", name, q)
	if w > 0 {
		item += fmt.Sprintf(";w=%d", max(1, ceilSeconds(w)))
	}
	return item
}

// userQuota is the user policy's: the window ("user") and the cooldown.
func userQuota(cfg limiter.Config) quota {
	var items []string
	q := quota{}
	if cfg.UserCooldown > 0 {
		items = append(items, policyItem("cooldown", 1, cfg.UserCooldown))
		q.name, q.window = "cooldown", max(1, ceilSeconds(cfg.UserCooldown))
	}
	if cfg.MaxRequestsPerUserHour > 0 {
		items = append([]string{policyItem("user", cfg.MaxRequestsPerUserHour, cfg.UserWindow)}, items...)
		q.name = "user"
	}
	q.policy = []string{strings.Join(items, ", ")}
	return q
}

func bucketQuota(b *limiter.Bucket) quota {
	perSecond, burst := b.Limit()
	refill := time.Duration(float64(burst) / perSecond * float64(time.Second))
	return quota{policy: []string{policyItem("bucket", burst, refill)}, name: "bucket"}
}

// budgetQuota counts units: r is what is left, t when the window empties.
func budgetQuota(b *limiter.Budget) quota {
	units, window := b.Limit()
	return quota{policy: []string{policyItem("budget", units, window)}, name: "budget"}
}

// slotsQuota is a slot acquire's: the pool's size, with r=0 until the
// retry when none was free. Every pool is built with the default size,
// Config.MaxConcurrentUsers (limiter.SlotsSettings).
func slotsQuota(cfg limiter.Config) quota {
	return quota{policy: []string{policyItem("slots", cfg.MaxConcurrentUsers, 0)}, name: "slots"}
}

var backoffQuota = quota{policy: []string{policyItem("backoff", 1, 0)}, name: "backoff", binary: true}

// set adds the headers for d: Retry-After on a denial (whole seconds,
// rounded up, at least 1), and q's RateLimit fields.
func (q quota) set(h http.Header, d limiter.Decision) {
	if !d.Allowed {
		h["Retry-After"] = []string{strconv.FormatInt(retryAfterSeconds(d.RetryAfter), 10)}
	}
	if q.name == "" {
		return
	}
	// Canonical keys, assigned: see jsonType.
	h["Ratelimit-Policy"] = q.policy
	name, r, t := q.name, int64(d.Remaining), ceilSeconds(d.ResetAfter)
	switch {
	case !d.Allowed:
		r, t = 0, retryAfterSeconds(d.RetryAfter)
		if d.Reason == limiter.ReasonCooldown {
			name = "cooldown"
		}
	case q.binary:
		r, t = 1, 0
	case r < 0 && name != "cooldown":
		// Failed open (Redis down): nothing was counted, so no count to give.
		return
	case name == "cooldown" || r < 0:
		// No count (no window): the cooldown starts now.
		name, r, t = "cooldown", 0, q.window
	}
	// By hand, not Sprintf: a decision's hot path.
	v := make([]byte, 0, 32)
	v = append(append(append(v, '"'), name...), `";r=`...)
	v = append(strconv.AppendInt(v, r, 10), ";t="...)
	h["Ratelimit"] = []string{string(strconv.AppendInt(v, t, 10))}
}
