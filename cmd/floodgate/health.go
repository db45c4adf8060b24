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

// readyz answers 200 when Redis answers PING within RedisTimeout.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RedisTimeout)
	defer cancel()
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "redis did not answer PING within FLOODGATE_REDIS_TIMEOUT")
		return nil
	}
	writeJSON(w, http.StatusOK, statusBody{"ready"})
	return nil
}
