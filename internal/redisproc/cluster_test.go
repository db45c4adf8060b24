package redisproc

import (
	"context"
	"os"
	"os/exec"
	"reflect"
	"testing"
	"time"
)

func TestParseClusterNodes(t *testing.T) {
	text := `07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host.example slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5460->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
`
	nodes, err := parseClusterNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClusterNode{
		{ID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", Addr: "127.0.0.1:30001", Master: true, Slots: [][2]int{{0, 5460}}},
		{ID: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1", Addr: "127.0.0.1:30002", Master: true, Slots: [][2]int{{5461, 10922}}},
		{ID: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", Addr: "127.0.0.1:30003", Master: true, Slots: [][2]int{{10923, 16383}}},
		{ID: "07c37dfeb235213a872192d90877d0cd55635b91", Addr: "127.0.0.1:30004", MasterID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"},
		{ID: "6ec23923021cf3ffec47632106199cb7f496ce01", Addr: "127.0.0.1:30005", MasterID: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1", Failed: true},
	}
	if !reflect.DeepEqual(nodes, want) {
		t.Fatalf("\n got %+v\nwant %+v", nodes, want)
	}
	if !nodes[0].HasSlot(5460) || nodes[0].HasSlot(5461) || !nodes[1].HasSlot(5461) {
		t.Fatal("HasSlot")
	}
	if _, err := parseClusterNodes("garbage line"); err == nil {
		t.Fatal("accepted a malformed line")
	}
}

func needBinaries(t *testing.T) {
	for _, b := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI is set but %s is not on PATH", b)
			}
			t.Skipf("%s is not on PATH", b)
		}
	}
}

// deploymentContext is for a test that starts a deployment of n
// redis-server processes: it needs the binaries, skips under -short, and
// is bounded by d.
func deploymentContext(t *testing.T, n string, d time.Duration) context.Context {
	t.Helper()
	needBinaries(t)
	if testing.Short() {
		t.Skipf("starts %s redis-server processes", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestCluster starts 3 masters + 3 replicas, checks the layout, fails a
// master over gracefully, kills another, sees its replica take over and
// restarts the killed node as a replica.
func TestCluster(t *testing.T) {
	ctx := deploymentContext(t, "six", 3*time.Minute)
	c, err := StartCluster(ctx, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if len(c.Addrs) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Addrs))
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	covered := 0
	for _, m := range masters {
		for _, r := range m.Slots {
			covered += r[1] - r[0] + 1
		}
		reps, err := c.ReplicasOf(ctx, m.ID)
		if err != nil || len(reps) != 1 {
			t.Fatalf("master %s has replicas %+v (%v), want 1", m.Addr, reps, err)
		}
	}
	if len(masters) != 3 || covered != 16384 {
		t.Fatalf("%d masters covering %d slots, want 3 covering 16384", len(masters), covered)
	}

	// Graceful failover: the replica of slot 0's master takes over.
	m0, err := c.MasterOf(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	reps, _ := c.ReplicasOf(ctx, m0.ID)
	if err := c.Failover(ctx, reps[0].Addr, ""); err != nil {
		t.Fatal(err)
	}
	if now, err := c.MasterOf(ctx, 0); err != nil || now.Addr != reps[0].Addr {
		t.Fatalf("after CLUSTER FAILOVER slot 0 is on %+v (%v), want %s", now, err, reps[0].Addr)
	}

	// Crash: kill slot 16383's master; its replica is promoted.
	m1, err := c.MasterOf(ctx, 16383)
	if err != nil {
		t.Fatal(err)
	}
	reps, _ = c.ReplicasOf(ctx, m1.ID)
	start := time.Now()
	if err := c.Kill(m1.Addr); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	now, err := c.MasterOf(ctx, 16383)
	if err != nil || now.Addr != reps[0].Addr {
		t.Fatalf("after the kill slot 16383 is on %+v (%v), want %s", now, err, reps[0].Addr)
	}
	t.Logf("replica promoted %v after the master was killed (node timeout %v)", time.Since(start).Round(time.Millisecond), ClusterNodeTimeout)

	// The crashed node comes back as a replica of its successor.
	if err := c.Restart(ctx, m1.Addr); err != nil {
		t.Fatal(err)
	}
	back, err := c.ReplicasOf(ctx, now.ID)
	if err != nil || len(back) != 1 || back[0].Addr != m1.Addr {
		t.Fatalf("after Restart the replicas of %s are %+v (%v), want %s", now.Addr, back, err, m1.Addr)
	}
}
