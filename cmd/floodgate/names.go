package main

import (
	"sync"
)

// handles keeps one policy handle per name a client used, at most max
// names. The library keeps in-process fallback state for every slot pool
// and backoff name it is given (limiter/local.go) for the Limiter's life,
// so the names a client can make this server hold are bounded here: past
// max, a new name is refused with 400 (known names go on working). It is
// safe for concurrent use.
type handles[T any] struct {
	what string
	max  int
	mk   func(name string) (*T, error)

	mu sync.Mutex
	m  map[string]*T
}

func newHandles[T any](what string, max int, mk func(string) (*T, error)) *handles[T] {
	return &handles[T]{what: what, max: max, mk: mk, m: map[string]*T{}}
}

// get returns name's handle, built on first use.
func (h *handles[T]) get(name string) (*T, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.m[name]; ok {
		return v, nil
	}
	if len(h.m) >= h.max {
		return nil, badRequest("%s %q: this server already serves %d %s names (FLOODGATE_HTTP_MAX_NAMES) and takes no new one until it restarts",
			h.what, name, h.max, h.what)
	}
	v, err := h.mk(name)
	if err != nil {
		return nil, err
	}
	h.m[name] = v
	return v, nil
}
