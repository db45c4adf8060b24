package limiter

import "time"

// Policy names, as given to an Observer.
const (
	PolicyUser    = "user"
	PolicyBackoff = "backoff"
	PolicyBucket  = "bucket"
	PolicySlots   = "slots"
)

// Observer receives what a Limiter does, for metrics. Implementations must
// be safe for concurrent use and fast: they run on the decision path.
type Observer interface {
	// ObserveDecision is called once per decision.
	ObserveDecision(policy string, d Decision)
	// ObserveRedis is called after each Redis round trip with its script
	// or command name, duration and error (nil on success).
	ObserveRedis(op string, took time.Duration, err error)
}

// BudgetObserver is an Observer that also counts a Budget's units (LLM
// tokens), for metrics: a Limiter whose Observer implements it calls
// ObserveUnits with the units a call spent (an allowed Charge, a Settle's
// actual) or was denied (a denied Reserve's estimate or Charge's cost),
// under the budget's name. Reservations that outlive their lease count in
// Redis as their estimate but are not reported: no call sees them end.
type BudgetObserver interface {
	ObserveUnits(budget string, spent bool, units int)
}

// observe reports d to the Observer, if any, and returns it.
func (l *Limiter) observe(policy string, d Decision) Decision {
	if l.obs != nil {
		l.obs.ObserveDecision(policy, d)
	}
	return d
}

// observeRedis reports one round trip to the Observer, if any.
func (l *Limiter) observeRedis(op string, start time.Time, err error) {
	if l.obs != nil {
		l.obs.ObserveRedis(op, time.Since(start), err)
	}
}
