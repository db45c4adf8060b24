package limiter

import (
	"sync"
	"time"
)

// gcraStep is bucket_allow.lua in Go, for the in-process fallback: n
// tokens at now against tat, all in µs. It returns the decision and the
// new TAT (unchanged when denied). A denial's RetryAfter is at least 1ms.
func gcraStep(now, tat, interval int64, burst, n int) (Decision, int64) {
	if tat < now {
		tat = now
	}
	tolerance := int64(burst) * interval
	newTat := tat + int64(n)*interval
	allowAt := newTat - tolerance
	if allowAt > now {
		remaining := (now + tolerance - tat) / interval
		return Decision{
			Reason:     ReasonRate,
			Remaining:  int(max(remaining, 0)),
			RetryAfter: time.Duration(max(allowAt-now, 1000)) * time.Microsecond,
			ResetAfter: time.Duration(tat-now) * time.Microsecond,
		}, tat
	}
	return Decision{
		Allowed:    true,
		Remaining:  int((now - allowAt) / interval),
		ResetAfter: time.Duration(newTat-now) * time.Microsecond,
	}, newTat
}

// localGCRA is one API's in-process GCRA state (FailLocal). Its clock is
// this process's monotonic clock.
type localGCRA struct {
	mu  sync.Mutex
	tat int64 // µs since localEpoch
}

var localEpoch = time.Now()

func (g *localGCRA) allow(interval int64, burst, n int) Decision {
	now := time.Since(localEpoch).Microseconds()
	g.mu.Lock()
	defer g.mu.Unlock()
	d, tat := gcraStep(now, g.tat, interval, burst, n)
	g.tat = tat
	return d
}
