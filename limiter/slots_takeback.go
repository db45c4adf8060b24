package limiter

import (
	"context"
	"sync"
	"time"
)

// Taking back what Redis may hold unseen. When a slots_acquire call fails
// (a timeout, a reset connection, the caller's context ending), Redis may
// have granted the slot or queued the waiter and lost only the reply. The
// member must come out again, or the slot stays held for a whole lease.
// A leave sent at once would fail too when the same failure marked the node
// down, and a background retry would be a goroutine the library promises
// not to start. So the member is owed: the next slots_acquire of the pool
// from this process removes it first, as soon as Redis answers again. An
// owed member is forgotten once Redis would have dropped it anyway (its
// lease or heartbeat ran out), and at most maxOwed are kept per pool (the
// oldest go first); either way the entry lapses by itself in Redis.

// maxOwed bounds the leaves a pool owes Redis, per process.
const maxOwed = 256

// leaveBudget bounds the leave a cancelled Acquire sends on its way out,
// so it returns at most this long after its context ends; a leave that
// does not make it is owed instead.
const leaveBudget = 50 * time.Millisecond

// owedLeaves is one pool's owed members, shared by every Slots of the
// name on one Limiter.
type owedLeaves struct {
	mu sync.Mutex
	m  []owedLeave
}

type owedLeave struct {
	member string
	until  time.Time // when Redis drops the entry by itself
}

// add owes member until Redis drops it by itself at until.
func (o *owedLeaves) add(member string, until time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.m) >= maxOwed {
		o.m = o.m[1:]
	}
	o.m = append(o.m, owedLeave{member, until})
}

// take removes and returns the members still owed at now.
func (o *owedLeaves) take(now time.Time) []owedLeave {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []owedLeave
	for _, e := range o.m {
		if e.until.After(now) {
			out = append(out, e)
		}
	}
	o.m = o.m[:0]
	return out
}

// restore owes again what take returned, when the call that carried them
// failed (Redis may not have run it).
func (o *owedLeaves) restore(es []owedLeave) {
	for _, e := range es {
		o.add(e.member, e.until)
	}
}

// owe records that Redis may hold member unseen (see above).
func (s *Slots) owe(member string) {
	s.owed.add(member, time.Now().Add(max(s.lease, s.waiterTTL())))
}

// leaveNow takes member out of the pool in Redis (slots_leave.lua) before
// Acquire returns: within RedisTimeout, and within leaveBudget once ctx
// has ended. When Redis does not answer, the leave is owed.
func (s *Slots) leaveNow(ctx context.Context, member string) {
	lctx := context.WithoutCancel(ctx)
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(lctx, leaveBudget)
		defer cancel()
	}
	if err := s.leave(lctx, member); err != nil && (lctx.Err() != nil || IsUnavailable(err)) {
		s.owe(member)
	}
}

// leave takes member out of the queue and the holders (slots_leave.lua).
func (s *Slots) leave(ctx context.Context, member string) error {
	_, err := s.l.run(ctx, slotsLeave, []string{s.holders, s.waiters, s.alive}, member)
	return err
}
