package limiter

import (
	"context"
	"errors"
	"fmt"
)

// ErrBackoffOpen is wrapped by the error Do returns when the endpoint may
// not be used now: it is backing off, another caller holds its probe, or
// Redis is down and BackoffOnRedisError is FailClosed. errors.As with a
// *BackoffOpenError gives the Decision, with its Reason and RetryAfter.
var ErrBackoffOpen = errors.New("limiter: endpoint not usable now")

// BackoffOpenError is the error Do returns when Check denies the endpoint.
type BackoffOpenError struct {
	Endpoint string
	Decision Decision
}

func (e *BackoffOpenError) Error() string {
	return fmt.Sprintf("limiter: endpoint %q not usable now (%v); retry after %v", e.Endpoint, e.Decision.Reason, e.Decision.RetryAfter)
}

// Unwrap returns ErrBackoffOpen.
func (e *BackoffOpenError) Unwrap() error { return ErrBackoffOpen }

// defaultIsFailure is BackoffSettings.IsFailure's default.
func defaultIsFailure(err error) bool { return !errors.Is(err, context.Canceled) }

// Do runs fn against endpoint if Check allows it and reports the outcome,
// as gobreaker's Execute does, so a forgotten report cannot hold a probe:
//   - fn returns nil: Success (the endpoint closes).
//   - the caller's ctx has ended (cancelled, or past its deadline) when fn
//     returns: nothing is counted; a probe is handed back (Abandon). The
//     endpoint's failure is not the caller giving up. To count a slow
//     endpoint as failing, give fn's request its own shorter timeout: its
//     context.DeadlineExceeded, with ctx still live, is a failure.
//   - otherwise BackoffSettings.IsFailure(err) decides: true (by default,
//     every error but one wrapping context.Canceled) is a Failure; false
//     counts nothing and hands a probe back.
//   - fn panics: the probe is handed back and the panic goes on.
//
// Do returns fn's error as is. When Check denies, fn is not run and the
// error is a *BackoffOpenError wrapping ErrBackoffOpen. When Check or the
// report fails with a Redis error other than an outage (outages follow
// BackoffOnRedisError, as Check's do), that error is returned, joined to
// fn's; fn runs at most once. The report after fn is made with ctx's values
// but not its cancellation, bounded by RedisTimeout, so that a probe is
// handed back even when ctx has ended: Do may return up to that long after
// ctx ends.
func (b *Backoff) Do(ctx context.Context, endpoint string, fn func(context.Context) error) error {
	if fn == nil {
		return fmt.Errorf("%w: Do with a nil function", ErrInvalidArgument)
	}
	d, err := b.Check(ctx, endpoint)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return &BackoffOpenError{Endpoint: endpoint, Decision: d}
	}
	returned := false
	defer func() {
		if !returned && d.Probe {
			_ = b.Abandon(context.WithoutCancel(ctx), endpoint, d.Token)
		}
	}()
	ferr := fn(ctx)
	returned = true
	var rerr error
	switch {
	case ferr == nil:
		rerr = b.Success(context.WithoutCancel(ctx), endpoint)
	case callerDone(ctx) == nil && b.set.IsFailure(ferr):
		_, rerr = b.Failure(context.WithoutCancel(ctx), endpoint)
	case d.Probe:
		rerr = b.Abandon(context.WithoutCancel(ctx), endpoint, d.Token)
	}
	if rerr != nil {
		return errors.Join(ferr, rerr)
	}
	return ferr
}
