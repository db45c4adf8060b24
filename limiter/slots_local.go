package limiter

import (
	"slices"
	"sync"
	"time"
)

// localSlots is one pool's in-process fallback (FailLocal): the same
// expiring leases and FIFO queue as in Redis, on this process's monotonic
// clock. Waiters always leave the queue when their Acquire returns, so
// they need no heartbeat.
type localSlots struct {
	mu    sync.Mutex
	held  map[string]time.Time // member → lease expiry
	queue []string             // waiting members, earliest first
}

// acquire grants member a slot by the same rules as slots_acquire.lua;
// with wait, a member that is not granted joins (or stays in) the queue.
// When not granted it also returns how long until the earliest lease
// expires, 0 when not every slot is held.
func (p *localSlots) acquire(member string, size int, lease time.Duration, wait bool) (bool, time.Duration) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var first time.Time
	for m, exp := range p.held {
		switch {
		case !exp.After(now):
			delete(p.held, m)
		case first.IsZero() || exp.Before(first):
			first = exp
		}
	}
	if _, ok := p.held[member]; ok {
		return true, 0
	}
	free := size - len(p.held)
	hint := time.Duration(0)
	if free <= 0 {
		hint = first.Sub(now)
	}
	rank := slices.Index(p.queue, member)
	switch {
	case rank < 0 && free > len(p.queue):
	case rank < 0 && wait:
		p.queue = append(p.queue, member)
		return false, hint
	case rank < 0:
		return false, hint
	case rank < free:
		p.queue = slices.Delete(p.queue, rank, rank+1)
	default:
		return false, hint
	}
	p.held[member] = now.Add(lease)
	return true, 0
}

func (p *localSlots) leave(member string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.queue, member); i >= 0 {
		p.queue = slices.Delete(p.queue, i, i+1)
	}
}

func (p *localSlots) refresh(member string, lease time.Duration) bool {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	exp, ok := p.held[member]
	if !ok || !exp.After(now) {
		delete(p.held, member)
		return false
	}
	p.held[member] = now.Add(lease)
	return true
}

func (p *localSlots) release(member string) bool {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	exp, ok := p.held[member]
	delete(p.held, member)
	return ok && exp.After(now)
}
