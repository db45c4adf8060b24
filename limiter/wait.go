package limiter

import (
	"context"
	"fmt"
	"time"
)

// waitFor calls try until it allows, sleeping each RetryAfter on one timer
// (never spinning), and gives up at once when the wait would pass ctx's
// deadline, as x/time/rate's Wait does. what names the limit in errors,
// already quoted where it holds user-supplied text.
func waitFor(ctx context.Context, what string, try func() (Decision, error)) (Decision, error) {
	var sl sleeper
	defer sl.stop()
	for {
		if err := ctx.Err(); err != nil {
			return Decision{}, fmt.Errorf("limiter: waiting for %s: %w", what, err)
		}
		d, err := try()
		if err != nil || d.Allowed {
			return d, err
		}
		wait := max(d.RetryAfter, time.Microsecond)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return d, fmt.Errorf("limiter: %s: waiting %v would pass the context deadline: %w", what, wait, context.DeadlineExceeded)
		}
		if err := sl.sleep(ctx, wait); err != nil {
			return d, fmt.Errorf("limiter: waiting for %s: %w", what, err)
		}
	}
}

// sleeper sleeps on one timer, made on first use and reused, for the
// polling loops (waitFor, Slots.Acquire).
type sleeper struct{ t *time.Timer }

// sleep waits d or until ctx ends, returning ctx.Err() then.
func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	if s.t == nil {
		s.t = time.NewTimer(d)
	} else {
		s.t.Reset(d)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.t.C:
		return nil
	}
}

// stop releases the timer, if any.
func (s *sleeper) stop() {
	if s.t != nil {
		s.t.Stop()
	}
}
