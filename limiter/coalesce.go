package limiter

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// batcher coalesces concurrent Allow calls of one Limiter into pipelines,
// like a database's group commit: up to maxInflight calls go to Redis on
// their own; callers arriving while those are in flight queue, and when a
// flight lands the queue becomes the next flight, sent as one pipeline. A
// lone caller never waits for anyone, so latency at low load is a plain
// round trip; under load, N callers share far fewer round trips and
// syscalls on both sides of the socket.
//
// A queued flight runs on its own goroutine, under Config.RedisTimeout and
// not under any caller's context: its other callers still want their
// answers. A caller whose context ends leaves at once, whatever the flight
// is doing (see leave), so no call outlives its caller's deadline; the
// goroutine ends with the flight, within RedisTimeout.
type batcher struct {
	mu       sync.Mutex
	inflight int
	queue    []*queuedCall
}

type queuedCall struct {
	ctx   context.Context // the caller's, for its values (a flight ignores its end)
	user  string
	sent  time.Time
	reply userReply
	done  chan struct{} // receives once the reply is set (state answered)
	state atomic.Int32
}

// queuedCall states, once a flight has taken the call.
const (
	callPending  = iota // in the queue or in a flight
	callAnswered        // the flight set reply and signalled done
	callLeft            // the caller left before the answer
)

const (
	maxInflight = 4
	maxBatch    = 2 * maxKeysPerScript
)

// allowRedis decides one request of user, sent at sent, through the
// batcher.
func (l *Limiter) allowRedis(ctx context.Context, user string, sent time.Time) userReply {
	b := &l.batcher
	b.mu.Lock()
	if b.inflight < maxInflight {
		b.inflight++
		b.mu.Unlock()
		// Deferred: a panic (say, in an Observer) must not keep the
		// flight's place forever and wedge every later caller.
		defer l.handOff()
		if l.cfg.WaitReplicas > 0 {
			// The acknowledged path (replica_ack.go) pipelines WAIT
			// after the script.
			var rep [1]userReply
			l.decideRedis(ctx, []string{user}, rep[:])
			return rep[0]
		}
		r, err := l.decideOne(ctx, user)
		return userReply{r: r, err: err}
	}
	q := &queuedCall{ctx: ctx, user: user, sent: sent, done: make(chan struct{}, 1)}
	b.queue = append(b.queue, q)
	b.mu.Unlock()
	select {
	case <-q.done:
		return q.reply
	case <-ctx.Done():
		return l.leave(ctx, q)
	}
}

// leave is a caller giving up on q when its context ends. Still queued, it
// leaves uncounted. Already in a flight, it leaves too, with an error
// wrapping its context's error, while the flight goes on: Redis may then
// count the request, as with any write whose caller timed out, and the
// flight reports that decision to the Observer and caches its denial
// (settle), so nothing Redis counted goes unseen. Answered meanwhile, it
// takes the answer.
func (l *Limiter) leave(ctx context.Context, q *queuedCall) userReply {
	if l.unqueue(q) {
		return userReply{err: &callerLeft{"left while waiting to ask Redis (not counted)", ctx.Err()}}
	}
	if q.state.CompareAndSwap(callPending, callLeft) {
		return userReply{err: &callerLeft{"left before its batched decision came back (Redis may still count the request)", ctx.Err()}}
	}
	<-q.done
	return q.reply
}

// callerLeft is the error of a caller that left the batcher when its
// context ended: how far its call got, and the context's error.
type callerLeft struct {
	what string
	err  error
}

func (e *callerLeft) Error() string { return e.what + ": " + e.err.Error() }
func (e *callerLeft) Unwrap() error { return e.err }

// unqueue removes q from the queue if no flight has taken it yet.
func (l *Limiter) unqueue(q *queuedCall) bool {
	b := &l.batcher
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, other := range b.queue {
		if other == q {
			// A fresh array: batches handed out share the old one.
			b.queue = append(b.queue[:i:i], b.queue[i+1:]...)
			return true
		}
	}
	return false
}

// handOff ends a flight: the queue (up to maxBatch calls) becomes the next
// flight, on its own goroutine. Taking the batch under the lock gives
// every queued call to exactly one flight.
func (l *Limiter) handOff() {
	b := &l.batcher
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.inflight--
		b.mu.Unlock()
		return
	}
	n := min(len(b.queue), maxBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the handed-out calls be collected
	}
	b.mu.Unlock()
	go l.flight(batch)
}

// flight sends batch as one round trip and answers every caller in it,
// then hands the flight on. A panic while deciding (an Observer's) is
// recovered: it has no caller to reach, so each call gets it as an error.
func (l *Limiter) flight(batch []*queuedCall) {
	defer l.handOff()
	replies := make([]userReply, len(batch))
	func() {
		defer func() {
			if p := recover(); p != nil {
				for i := range replies {
					replies[i] = userReply{err: fmt.Errorf("limiter: a batched decision panicked: %v", p)}
				}
			}
		}()
		users := make([]string, len(batch))
		for i, q := range batch {
			users[i] = q.user
		}
		l.decideRedis(context.WithoutCancel(batch[0].ctx), users, replies)
	}()
	for i, q := range batch {
		q.reply = replies[i]
		if q.state.CompareAndSwap(callPending, callAnswered) {
			q.done <- struct{}{}
			continue
		}
		l.settle(q)
	}
}

// settle reports the decision Redis made for a caller that left: the
// Observer sees it and a denial goes into the deny cache, as if the
// caller had stayed. Errors need nothing: the caller got its own.
func (l *Limiter) settle(q *queuedCall) {
	if q.reply.err != nil {
		return
	}
	defer func() { _ = recover() }() // an Observer's panic has nowhere to go
	d, err := userDecision(q.reply.r[:])
	if err != nil {
		return
	}
	if l.cache != nil {
		l.cache.put(q.user, q.sent, d)
	}
	l.local.redisSaid(q.user, d)
	l.observe(PolicyUser, d)
}
