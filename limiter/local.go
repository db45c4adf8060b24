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
	budgets  map[string]*localBudget
}

// shared returns m[name], made by mk and kept on first use, under s.mu.
func shared[T any](s *localState, m *map[string]*T, name string, mk func() *T) *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *m == nil {
		*m = map[string]*T{}
	}
	v := (*m)[name]
	if v == nil {
		v = mk()
		(*m)[name] = v
	}
	return v
}

// breaker returns the fallback of the Backoff called name: every handle of
// one name shares it.
func (s *localState) breaker(name string) *localBreaker {
	return shared(s, &s.breakers, name, func() *localBreaker { return &localBreaker{m: map[string]*localEndpoint{}} })
}

func (s *localState) gcra(name string) *localGCRA {
	return shared(s, &s.buckets, name, func() *localGCRA { return &localGCRA{} })
}

func (s *localState) slots(name string) *localSlots {
	return shared(s, &s.pools, name, func() *localSlots { return &localSlots{held: map[string]time.Time{}} })
}

// owedLeaves returns the leaves the pool name owes Redis (slots_takeback.go).
func (s *localState) owedLeaves(name string) *owedLeaves {
	return shared(s, &s.owed, name, func() *owedLeaves { return &owedLeaves{} })
}
