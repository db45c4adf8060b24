package main

import (
	"context"
	"net/http"
)

type statusBody struct {
	Status string `json:"status"`
}

// healthz answers 200 while the process serves: for load balancers, open
// without a token.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, statusBody{"ok"})
	return nil
}

// readyz answers 200 when Redis answers PING within RedisTimeout, with
// what Redis's maxmemory-policy means for the limits.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RedisTimeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "redis did not answer PING within FLOODGATE_REDIS_TIMEOUT")
		return nil
	}
	body := readyBody{Status: "ready"}
	// Redis's maxmemory-policy, read again (one INFO round trip): an
	// unsafe one forgets limits, but Redis still serves, so still 200.
	if e, err := s.lim.CheckEviction(ctx); err == nil {
		body.readyEviction = &readyEviction{e.Policy, e.Unsafe, e.EvictedKeys, e.Warning()}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// readyBody is /readyz's answer: with what Redis's maxmemory-policy means
// for the limits (limiter.Eviction), when it could be read.
type readyBody struct {
	Status string `json:"status"`
	*readyEviction
}

type readyEviction struct {
	Policy      string `json:"maxmemory_policy"`
	Unsafe      bool   `json:"eviction_unsafe"`
	EvictedKeys int64  `json:"evicted_keys"`
	Warning     string `json:"warning,omitempty"`
}
