package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// health remembers that Redis just failed to answer, so that for
// redisRetryInterval every call falls back at once instead of each waiting
// out Config.RedisTimeout; the first call after the interval tries Redis
// again, and shared limits resume by themselves when it answers. A refused
// or reset connection marks Redis down at once; timeouts only after
// downAfterTimeouts in a row, so one slow answer on a busy machine does
// not send every caller to local limits.
type health struct {
	downUntil atomic.Int64 // UnixNano; 0 when up
	timeouts  atomic.Int32 // consecutive unavailable errors
	interval  time.Duration

	// A streak of READONLY replies (readOnly): its first and latest, in
	// UnixNano, 0 when none; roGrace overrides readOnlyGrace in tests.
	roFirst, roLast atomic.Int64
	roGrace         time.Duration
}

const (
	// redisRetryInterval is how long calls skip Redis after it was
	// unreachable.
	redisRetryInterval = time.Second
	downAfterTimeouts  = 3
	// readOnlyGrace is how long READONLY replies count as an outage: a
	// failover moves clients to the new master well within it.
	readOnlyGrace = 5 * time.Second
)

// healthOf returns the health of the Redis node serving key: on a Cluster
// one per master, so a crashed master sends only its own slots' decisions
// to the fallback while the other masters keep deciding; elsewhere the
// Limiter's single one. Finding the master needs no round trip once
// go-redis knows the slot map.
func (l *Limiter) healthOf(ctx context.Context, key string) *health {
	cc, ok := l.rdb.(*redis.ClusterClient)
	if !ok {
		return &l.health
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return &l.health
	}
	addr := node.Options().Addr
	if h, ok := l.nodes.Load(addr); ok {
		return h.(*health)
	}
	h, _ := l.nodes.LoadOrStore(addr, &health{interval: l.health.interval})
	return h.(*health)
}

// check fails, wrapping ErrRedisUnavailable, while the node is marked down.
func (h *health) check() error {
	until := h.downUntil.Load()
	if until == 0 || time.Now().UnixNano() >= until {
		return nil
	}
	return fmt.Errorf("%w: no answer lately, retrying in %v", ErrRedisUnavailable,
		time.Duration(until-time.Now().UnixNano()).Round(time.Millisecond))
}

// failed marks Redis down when err says it is unreachable, unless the
// caller's own context ended (their deadline, not Redis's fault).
func (h *health) failed(parent context.Context, err error) {
	if !isOutage(parent, err) {
		return
	}
	refused := errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
	if h.timeouts.Add(1) >= downAfterTimeouts || refused {
		h.downUntil.Store(time.Now().Add(h.interval).UnixNano())
	}
}

// ok records an answer: the node is up.
func (h *health) ok() {
	if h.downUntil.Load() != 0 {
		h.downUntil.Store(0)
	}
	if h.timeouts.Load() != 0 {
		h.timeouts.Store(0)
	}
	if h.roFirst.Load() != 0 && time.Since(time.Unix(0, h.roLast.Load())) >= h.grace() {
		h.roFirst.Store(0)
	}
}

// failing reports whether the node's latest call went unanswered (it is
// marked down, or timed out since its last answer).
func (h *health) failing() bool {
	return h.downUntil.Load() != 0 || h.timeouts.Load() > 0
}

// readOnly classifies a READONLY reply (a write refused by a replica) from
// this node at now. It is an outage (ErrRedisUnavailable: the FailureMode
// applies) for readOnlyGrace from the first READONLY of a streak, the time
// a failover takes to move clients to the new master (Sentinel, Cluster,
// or a DNS name that now resolves elsewhere); after that it is
// ErrReadOnly, returned to every caller: the address is a replica. A
// streak ends at the first answer readOnlyGrace after its last READONLY.
func (h *health) readOnly(now time.Time) error {
	n := now.UnixNano()
	h.roLast.Store(n)
	first := h.roFirst.Load()
	if first == 0 {
		if h.roFirst.CompareAndSwap(0, n) {
			first = n
		} else {
			first = h.roFirst.Load()
		}
	}
	if time.Duration(n-first) < h.grace() {
		return fmt.Errorf("%w: the server is a read-only replica (a failover?)", ErrRedisUnavailable)
	}
	return ErrReadOnly
}

func (h *health) grace() time.Duration {
	if h.roGrace != 0 {
		return h.roGrace
	}
	return readOnlyGrace
}
