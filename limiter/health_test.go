package limiter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestReadOnlyIsAnOutageOnlyBriefly: READONLY replies count as an outage
// for readOnlyGrace from the first of a streak, then as ErrReadOnly; an
// answer readOnlyGrace after the last READONLY ends the streak.
func TestReadOnlyIsAnOutageOnlyBriefly(t *testing.T) {
	var h health
	t0 := time.Now().Add(-readOnlyGrace) // the streak's last READONLY is now
	for _, at := range []time.Duration{0, time.Second, readOnlyGrace - time.Millisecond} {
		if err := h.readOnly(t0.Add(at)); !IsUnavailable(err) || errors.Is(err, ErrReadOnly) {
			t.Fatalf("READONLY %v into a streak: %v, want an outage", at, err)
		}
	}
	err := h.readOnly(t0.Add(readOnlyGrace))
	if !errors.Is(err, ErrReadOnly) || IsUnavailable(err) {
		t.Fatalf("READONLY %v into a streak: %v, want ErrReadOnly, not an outage", readOnlyGrace, err)
	}
	h.ok() // an answer right after: the streak goes on
	if err := h.readOnly(time.Now()); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("after an answer within the grace: %v, want ErrReadOnly still", err)
	}
	h.roLast.Store(time.Now().Add(-readOnlyGrace).UnixNano())
	h.ok() // an answer long after the last READONLY: a new streak next time
	if err := h.readOnly(time.Now()); !IsUnavailable(err) {
		t.Fatalf("READONLY after the streak ended: %v, want an outage again", err)
	}
}

// TestReadOnlyReplicaFailsLoudly: Allow against a server answering
// READONLY degrades while a failover could be moving clients, then
// returns ErrReadOnly instead of degrading every decision.
func TestReadOnlyReplicaFailsLoudly(t *testing.T) {
	r := newTestRedis(t)
	// go-redis retries READONLY (MaxRetries) before we see it.
	rdb := redis.NewClient(&redis.Options{Addr: r.mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	l, err := New(rdb, userConfig(0, 5, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	l.health.interval = 0 // no skipping: every call meets the replica
	r.mr.SetError("READONLY You can't write against a read only replica.")
	d, err := l.Allow(context.Background(), "u")
	if err != nil || !d.Degraded {
		t.Fatalf("first READONLY: %+v, %v; want a degraded decision", d, err)
	}
	l.health.roFirst.Store(time.Now().Add(-readOnlyGrace).UnixNano())
	_, err = l.Allow(context.Background(), "u")
	if !errors.Is(err, ErrReadOnly) || IsUnavailable(err) {
		t.Fatalf("READONLY past the grace: %v; want ErrReadOnly, not an outage", err)
	}
	_, err = l.AllowMany(context.Background(), []string{"u", "v"})
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("AllowMany past the grace: %v; want ErrReadOnly", err)
	}
	r.mr.SetError("") // promoted: answers again
	if d, err := l.Allow(context.Background(), "u"); err != nil || d.Degraded || !d.Allowed {
		t.Fatalf("after promotion: %+v, %v", d, err)
	}
}
