package limiter

import (
	"sync"
	"time"
)

// localBreaker is the FailLocal fallback: the same breaker as the scripts,
// per process, on the local clock, under a mutex. It starts empty (every
// endpoint closed) and is consulted only while Redis cannot be reached.
type localBreaker struct {
	mu sync.Mutex
	m  map[string]*localEndpoint
}

type localEndpoint struct {
	opens, failures int
	delay           int64     // nominal, ms
	until, probe    time.Time // open until; probe lease end (zero: none)
	token           string    // the probe's token
	forget          time.Time // like the key's TTL
}

// localSweepAt is the map size past which inserting sweeps forgotten
// entries, so arbitrary endpoint names cannot grow the map without bound.
const localSweepAt = 1024

// get returns endpoint's live entry, or nil (closed); lb.mu is held.
func (lb *localBreaker) get(endpoint string, now time.Time) *localEndpoint {
	e := lb.m[endpoint]
	if e != nil && !now.Before(e.forget) {
		delete(lb.m, endpoint)
		return nil
	}
	return e
}

func (lb *localBreaker) check(now time.Time, endpoints []string, lease, keep, idle time.Duration, token string) (int, Decision) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	best := Decision{RetryAfter: -1}
	for i, ep := range endpoints {
		e := lb.get(ep, now)
		if e == nil {
			return i, Decision{Allowed: true, Remaining: Unlimited}
		}
		var d Decision
		switch {
		case now.Before(e.until):
			d = Decision{Reason: ReasonBackoff, RetryAfter: e.until.Sub(now)}
		case now.Before(e.probe):
			d = Decision{Reason: ReasonProbing, RetryAfter: e.probe.Sub(now)}
		default:
			e.probe, e.token = now.Add(lease), token
			e.forget = now.Add(backoffKeyTTL(lease, keep, idle))
			return i, Decision{Allowed: true, ResetAfter: lease, Probe: true, Token: e.token}
		}
		if best.RetryAfter < 0 || d.RetryAfter < best.RetryAfter {
			best = d
		}
	}
	best.ResetAfter = best.RetryAfter
	return -1, best
}

func (lb *localBreaker) failure(now time.Time, endpoint string, s backoffSched, cut int64) Decision {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	e := lb.get(endpoint, now)
	if e == nil {
		if len(lb.m) >= localSweepAt {
			for k, v := range lb.m {
				if !now.Before(v.forget) {
					delete(lb.m, k)
				}
			}
		}
		e = &localEndpoint{}
		lb.m[endpoint] = e
	}
	e.failures++
	if now.Before(e.until) {
		w := e.until.Sub(now)
		return Decision{Reason: ReasonBackoff, RetryAfter: w, ResetAfter: w}
	}
	e.opens++
	e.delay = s.next(e.delay)
	w := fromMs(backoffJittered(e.delay, cut))
	e.until, e.probe, e.token = now.Add(w), time.Time{}, ""
	e.forget = now.Add(backoffKeyTTL(w, fromMs(s.max), fromMs(s.idle)))
	return Decision{Reason: ReasonBackoff, RetryAfter: w, ResetAfter: w}
}

// abandon frees endpoint's probe if token names it.
func (lb *localBreaker) abandon(endpoint, token string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if e := lb.m[endpoint]; e != nil && e.token == token {
		e.probe, e.token = time.Time{}, ""
	}
}

func (lb *localBreaker) success(endpoint string) {
	lb.mu.Lock()
	delete(lb.m, endpoint)
	lb.mu.Unlock()
}

// backoffKeyTTL is the TTL a write gives an endpoint's key
// (lib/backoff_ttl.lua's ttl): its next deadline dl plus keep, capped at
// MaxIdleTime, but never below dl itself.
func backoffKeyTTL(dl, keep, idle time.Duration) time.Duration {
	return max(dl, min(dl+keep, idle))
}
