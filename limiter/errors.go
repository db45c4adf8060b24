package limiter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors with stated contracts; test them with errors.Is.
var (
	// ErrInvalidUser: a user id is empty or longer than MaxUserLen bytes.
	// Nothing was sent to Redis.
	ErrInvalidUser = errors.New("limiter: invalid user id")
	// ErrInvalidName: an endpoint, API or slot-pool name is empty, longer
	// than MaxNameLen bytes or not valid UTF-8. Nothing was sent to Redis.
	ErrInvalidName = errors.New("limiter: invalid name")
	// ErrInvalidArgument: a numeric argument (rate, burst, size, lease, n)
	// is out of range. Nothing was sent to Redis.
	ErrInvalidArgument = errors.New("limiter: invalid argument")
	// ErrForeignKey: a key under Floodgate's prefix holds data Floodgate did
	// not write (another program shares the prefix). That request fails;
	// nothing was written.
	ErrForeignKey = errors.New("limiter: key holds data Floodgate did not write (does another program use the prefix?)")
	// ErrRedisUnavailable wraps the Redis error when a policy fails closed
	// or cannot decide without Redis.
	ErrRedisUnavailable = errors.New("limiter: redis unavailable")
	// ErrReadOnly: Redis refused a write because the server is a read-only
	// replica, for longer than a failover takes (5 s): the configured
	// address names a replica. Point it at the master, or use Sentinel or
	// Cluster. It is returned to every caller, not treated as an outage;
	// during the first 5 s READONLY is an outage (IsUnavailable), as while
	// a failover moves clients to the new master.
	ErrReadOnly = errors.New("limiter: Redis is a read-only replica (point the Redis URL at the master, or use Sentinel or Cluster)")
)

// errNilLimiter: a method was called on a nil or zero Limiter.
var errNilLimiter = fmt.Errorf("%w: nil or zero Limiter (build one with New)", ErrInvalidArgument)

// IsUnavailable reports whether err means Redis could not be reached, did
// not answer in time or cannot serve for now, such as a full Redis
// refusing writes (IsOutOfMemory), as opposed to Redis answering with an
// error about the request. Such errors trigger a policy's FailureMode.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrRedisUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// Redis answers these while it cannot serve: loading after a restart,
	// a cluster slot without a master, a replica that lost its master, a
	// full Redis under noeviction (IsOutOfMemory). Only the server's own
	// reply is read, never our wrapping, which quotes keys and so user
	// ids. READONLY is not among them: the call path decides
	// (health.readOnly).
	for _, p := range []string{"LOADING", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", oomPrefix} {
		if isRedisReply(err, p) {
			return true
		}
	}
	return false
}

// isOutage reports whether a policy's FailureMode applies to err: Redis is
// out of reach, and the caller's own context has not ended (their
// deadline or cancellation is theirs to see, not an outage).
func isOutage(ctx context.Context, err error) bool {
	return callerDone(ctx) == nil && IsUnavailable(err)
}

// callerDone is ctx.Err(), or context.DeadlineExceeded once ctx's deadline
// has passed: a read that timed out at that deadline (go-redis sets it on
// the connection) can come back before ctx's own timer has ended ctx, and
// must not count as Redis's timeout, which would mark Redis down for
// every caller.
func callerDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// isRedisReply reports whether err holds an error reply from the server
// that mentions code (WRONGTYPE, LOADING...): at its start, or inside a
// script error that quotes it. Only the reply is read: our wrapping quotes
// keys, which hold user ids.
func isRedisReply(err error, code string) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(re.Error(), code)
}
