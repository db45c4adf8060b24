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
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
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
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return d, fmt.Errorf("limiter: waiting for %s: %w", what, ctx.Err())
		case <-timer.C:
		}
	}
}
