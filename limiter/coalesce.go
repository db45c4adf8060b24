package limiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// batcher coalesces concurrent Allow calls of one Limiter into pipelines,
// like a database's group commit: up to maxInflight calls go to Redis on
// their own; callers arriving while those are in flight queue, and when a
// flight lands its caller hands the queue to the first waiter, which sends
// it as one pipeline. A lone caller never waits for anyone, so latency at
// low load is a plain round trip; under load, N callers share far fewer
// round trips and syscalls on both sides of the socket.
type batcher struct {
	mu       sync.Mutex
	inflight int
	queue    []*queuedCall
}

type queuedCall struct {
	user  string
	reply userReply
	done  chan struct{}
	batch []*queuedCall // set on the leader of a batch
}

const (
	maxInflight = 4
	maxBatch    = 2 * maxKeysPerScript
)

// allowRedis decides one request of user through the batcher.
func (l *Limiter) allowRedis(ctx context.Context, user string) userReply {
	b := &l.batcher
	b.mu.Lock()
	if b.inflight < maxInflight {
		b.inflight++
		b.mu.Unlock()
		// Deferred: a panic (say, in an Observer) must not keep the
		// flight's place forever and wedge every later caller.
		defer l.handOff()
		var rep [1]userReply
		l.decideRedis(ctx, []string{user}, rep[:])
		return rep[0]
	}
	q := &queuedCall{user: user, done: make(chan struct{}, 1)}
	b.queue = append(b.queue, q)
	b.mu.Unlock()
	select {
	case <-q.done:
	case <-ctx.Done():
		// Still queued: leave, uncounted. Already in a batch: that batch
		// will answer (bounded by RedisTimeout), and its leader may be us.
		if l.unqueue(q) {
			return userReply{err: fmt.Errorf("limiter: waiting to ask Redis: %w", ctx.Err())}
		}
		<-q.done
	}
	if q.batch != nil {
		l.lead(ctx, q.batch)
	}
	return q.reply
}

// unqueue removes q from the queue if no batch has taken it yet.
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
// flight, led by its first caller. Taking the batch under the lock gives
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
	batch[0].batch = batch
	batch[0].done <- struct{}{}
}

// lead sends batch (the leader first) as one round trip and wakes every
// caller in it. The batch outlives the leader's cancelled context: the
// others are still waiting for their answers, and RedisTimeout still
// bounds it. Even if deciding panics, every caller is woken (with an
// error) and the flight is handed on.
func (l *Limiter) lead(ctx context.Context, batch []*queuedCall) {
	done := false
	defer func() {
		if !done {
			for _, q := range batch {
				q.reply = userReply{err: errors.New("limiter: a batched decision panicked")}
			}
		}
		for _, q := range batch[1:] {
			q.done <- struct{}{}
		}
		l.handOff()
	}()
	users := make([]string, len(batch))
	for i, q := range batch {
		users[i] = q.user
	}
	replies := make([]userReply, len(batch))
	l.decideRedis(context.WithoutCancel(ctx), users, replies)
	for i, q := range batch {
		q.reply = replies[i]
	}
	done = true
}
