package redisproc

import (
	"testing"
	"time"
)

// TestSentinel starts a master, a replica and three sentinels, kills the
// master, sees the replica promoted and the killed node come back as the
// new master's replica.
func TestSentinel(t *testing.T) {
	ctx := deploymentContext(t, "five", 2*time.Minute)
	s, err := StartSentinel(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if len(s.Sentinels) != 3 || len(s.Data) != 2 {
		t.Fatalf("%d sentinels and %d data nodes, want 3 and 2", len(s.Sentinels), len(s.Data))
	}
	old, err := s.Master(ctx)
	if err != nil || old != s.Data[0] {
		t.Fatalf("master %q (%v), want the first node %s", old, err, s.Data[0])
	}
	if err := s.Kill(old); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := s.WaitFailover(ctx, old)
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Output())
	}
	if m != s.Data[1] {
		t.Fatalf("new master %s, want the replica %s", m, s.Data[1])
	}
	t.Logf("failover took %v", time.Since(start))
	if err := s.Restart(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitHealthy(ctx); err != nil {
		t.Fatalf("%v\n%s", err, s.Output())
	}
	if m2, _ := s.Master(ctx); m2 != m {
		t.Fatalf("master after the restart %s, want %s", m2, m)
	}
}
