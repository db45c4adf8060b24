package redisproc

import (
	"os"
	"testing"
	"time"
)

// TestSentinel starts a master, a replica and three sentinels, kills the
// master, sees the replica promoted and the killed node come back as the
// new master's replica. Every node's directory is gone once replaced or
// stopped.
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
	dirs := []string{s.data[old].Dir()}
	if err := s.Restart(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirs[0]); !os.IsNotExist(err) {
		t.Errorf("the killed node's directory %s outlived its restart: %v", dirs[0], err)
	}
	if err := s.WaitHealthy(ctx); err != nil {
		t.Fatalf("%v\n%s", err, s.Output())
	}
	if m2, _ := s.Master(ctx); m2 != m {
		t.Fatalf("master after the restart %s, want %s", m2, m)
	}
	for _, addr := range s.Data {
		dirs = append(dirs, s.data[addr].Dir())
	}
	s.Stop()
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s outlived Stop: %v", d, err)
		}
	}
}
