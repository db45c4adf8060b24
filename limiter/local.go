package limiter

import (
	"sync"
	"time"
)

// localState holds one Limiter's in-process fallbacks (FailLocal), one per
// API or slot pool name, so that every Bucket or Slots of a name shares it,
// however often the caller builds them.
type localState struct {
	mu       sync.Mutex
	buckets  map[string]*localGCRA
	pools    map[string]*localSlots
	owed     map[string]*owedLeaves
	breakers map[string]*localBreaker
}

// breaker returns the fallback of the Backoff called name: every handle of
// one name shares it.
func (s *localState) breaker(name string) *localBreaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.breakers == nil {
		s.breakers = map[string]*localBreaker{}
	}
	b := s.breakers[name]
	if b == nil {
		b = &localBreaker{m: map[string]*localEndpoint{}}
		s.breakers[name] = b
	}
	return b
}

func (s *localState) gcra(name string) *localGCRA {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buckets == nil {
		s.buckets = map[string]*localGCRA{}
	}
	g := s.buckets[name]
	if g == nil {
		g = &localGCRA{}
		s.buckets[name] = g
	}
	return g
}

func (s *localState) slots(name string) *localSlots {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pools == nil {
		s.pools = map[string]*localSlots{}
	}
	p := s.pools[name]
	if p == nil {
		p = &localSlots{held: map[string]time.Time{}}
		s.pools[name] = p
	}
	return p
}

// owedLeaves returns the leaves the pool name owes Redis (slots_takeback.go).
func (s *localState) owedLeaves(name string) *owedLeaves {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owed == nil {
		s.owed = map[string]*owedLeaves{}
	}
	o := s.owed[name]
	if o == nil {
		o = &owedLeaves{}
		s.owed[name] = o
	}
	return o
}

// locals is the Limiter's in-process fallback state for buckets and pools,
// shared per name however often callers build Buckets or Slots.
func (l *Limiter) locals() *localState { return &l.fallback }
