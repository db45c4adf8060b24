package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// Stand-ins for library calls that are being added (RULES.md shared
// decisions 2 and 3); replaced as they land.

var errPending = &apiError{status: http.StatusNotImplemented, msg: "not available in this build"}

func abandon(ctx context.Context, b *limiter.Backoff, endpoint, token string) error {
	return errPending
}

func leaseToken(l *limiter.Lease) string { return "" }

func leaseFromToken(s *limiter.Slots, token string) (*limiter.Lease, error) {
	return nil, errPending
}

func noSlotRetry(err error) time.Duration { _ = errors.Is; return time.Second }
