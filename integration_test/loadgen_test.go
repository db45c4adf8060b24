package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisproc"
)

// loadgen's --json, as far as these tests read it.
type loadgenReport struct {
	Environment struct {
		Target         string `json:"target"`
		Mode           string `json:"mode"`
		MemoryMeasured bool   `json:"memory_measured"`
		Prefix         string `json:"prefix"`
		CommandLine    string `json:"command_line"`
		GoVersion      string `json:"go_version"`
		CPUs           int    `json:"cpus"`
		Server         struct {
			Version string `json:"redis_version"`
			Entries string `json:"zset_max_listpack_entries"`
			Value   string `json:"zset_max_listpack_value"`
		} `json:"server"`
	} `json:"environment"`
	Scenarios []struct {
		Users int `json:"users"`
		Tests []struct {
			Test   string `json:"test"`
			Users  int    `json:"users"`
			Memory *struct {
				DeltaBytes         int64   `json:"delta_bytes"`
				BytesPerUser       float64 `json:"bytes_per_user"`
				MemoryUsagePerUser float64 `json:"memory_usage_bytes_per_user"`
				Encoding           string  `json:"encoding"`
			} `json:"memory"`
			Latency struct {
				Lookups int     `json:"lookups"`
				P50us   float64 `json:"p50_us"`
				P99us   float64 `json:"p99_us"`
				P999us  float64 `json:"p999_us"`
			} `json:"latency"`
			Throughput struct {
				Ratio1    float64 `json:"ratio_1"`
				RatioN    float64 `json:"ratio_n"`
				PingP50us float64 `json:"ping_p50_us"`
			} `json:"throughput"`
			Purge struct {
				Ms   float64 `json:"ms"`
				Keys int64   `json:"keys"`
			} `json:"purge"`
			Expiry *struct {
				Keys            int64    `json:"keys"`
				ExpiredKeys     int64    `json:"expired_keys"`
				KeysReclaimedMs *float64 `json:"keys_reclaimed_ms"`
				KeysLeft        int64    `json:"keys_left"`
			} `json:"expiry"`
			Acceptance struct {
				RAM     struct{ Status string } `json:"ram"`
				Cleanup struct{ Status string } `json:"cleanup"`
				Lookup  struct{ Status string } `json:"lookup"`
			} `json:"acceptance"`
		} `json:"tests"`
	} `json:"scenarios"`
}

func runLoadgen(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = serveEnv(nil, nil) // loadgen goes by its flags, or starts its own server
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func readReport(t *testing.T, path string) loadgenReport {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r loadgenReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("--json output: %v", err)
	}
	return r
}

func keysUnder(t *testing.T, rdb *redis.Client, prefix string) []string {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestLoadgenAgainstRedis runs loadgen at the study's two small sizes on the
// shared server, as a user would against their own Redis, and checks every
// figure is there and plausible, and that it deleted exactly its own keys.
func TestLoadgenAgainstRedis(t *testing.T) {
	skipIfShort(t) // -short keeps TestLoadgenCtrlC
	rdb := client(t)
	bin := commandBin(t, "loadgen")
	ctx := context.Background()
	// A neighbour's key, just outside loadgen's prefix.
	other := uniquePrefix(t, rdb)
	prefix := other + "lg:"
	if err := rdb.Set(ctx, other+"neighbour", "keep", 0).Err(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "r.json")
	stdout, stderr, code := runLoadgen(t, bin, "--users", "100,1000", "--redis-url", redisURL, "--prefix", prefix,
		"--json", out, "--idle", "300ms", "--lookups", "1000", "--duration", "100ms", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	if !strings.Contains(stderr, "blurs") {
		t.Errorf("no warning that other traffic blurs used_memory on a Redis loadgen does not own: %q", stderr)
	}
	for _, want := range []string{"B/user", "x PING", "Yes: RAM is under 10 MB for 10K users", "Implement per-user cooldowns"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	r := readReport(t, out)
	e := r.Environment
	if e.Mode != "url" || !e.MemoryMeasured || e.Prefix != prefix || e.Server.Version == "" || e.Server.Entries == "" || e.GoVersion == "" || e.CPUs < 1 {
		t.Errorf("environment = %+v", e)
	}
	if len(r.Scenarios) != 2 || r.Scenarios[0].Users != 100 || r.Scenarios[1].Users != 1000 {
		t.Fatalf("scenarios: %+v", r.Scenarios)
	}
	for _, sc := range r.Scenarios {
		if len(sc.Tests) != 3 {
			t.Fatalf("%d users: %d tests, want cooldown, hourly, full", sc.Users, len(sc.Tests))
		}
		for _, x := range sc.Tests {
			name := fmt.Sprintf("%d users, %s", sc.Users, x.Test)
			// One key of at least ~100 B per user; a 20-entry listpack is
			// ~300 B. 2 kB would mean skiplists or leaked state.
			if m := x.Memory; m == nil || m.BytesPerUser < 50 || m.BytesPerUser > 2000 || m.MemoryUsagePerUser <= 0 {
				t.Errorf("%s: memory %+v, want 50..2000 B/user", name, m)
			} else if x.Test != "cooldown" && m.Encoding != "listpack" {
				t.Errorf("%s: encoding %q, want listpack", name, m.Encoding)
			}
			if x.Latency.Lookups != 1000 || x.Latency.P50us <= 0 || x.Latency.P99us < x.Latency.P50us || x.Latency.P999us < x.Latency.P99us {
				t.Errorf("%s: latency %+v", name, x.Latency)
			}
			if th := x.Throughput; th.Ratio1 <= 0 || th.RatioN <= 0 || th.PingP50us <= 0 {
				t.Errorf("%s: throughput %+v, want PING ratios > 0", name, th)
			}
			// One key per user, plus the full test's few shared keys.
			if x.Purge.Keys < int64(sc.Users) || x.Purge.Keys > int64(sc.Users)+16 || x.Purge.Ms <= 0 {
				t.Errorf("%s: purge %+v, want %d keys (+ shared state)", name, x.Purge, sc.Users)
			}
			if ex := x.Expiry; ex == nil || ex.Keys != int64(sc.Users) || ex.ExpiredKeys < ex.Keys || ex.KeysReclaimedMs == nil || ex.KeysLeft != 0 {
				t.Errorf("%s: expiry %+v, want every key expired by Redis, none left", name, ex)
			}
			for _, st := range []string{x.Acceptance.RAM.Status, x.Acceptance.Cleanup.Status, x.Acceptance.Lookup.Status} {
				if st != "PASS" && st != "FAIL" {
					t.Errorf("%s: acceptance status %q", name, st)
				}
			}
		}
	}
	if keys := keysUnder(t, rdb, prefix); len(keys) != 0 {
		t.Errorf("%d keys left under %s, e.g. %s", len(keys), prefix, keys[0])
	}
	if v, err := rdb.Get(ctx, other+"neighbour").Result(); err != nil || v != "keep" {
		t.Errorf("the neighbour's key: %q, %v", v, err)
	}
}

// TestLoadgenEmbedded runs loadgen with no Redis configured: it starts its
// own redis-server, measures the cost of a cooldown key, draws it (--svg)
// and stops the server.
func TestLoadgenEmbedded(t *testing.T) {
	needRedisServer(t)
	bin := commandBin(t, "loadgen")
	out := filepath.Join(t.TempDir(), "r.json")
	svg := filepath.Join(t.TempDir(), "m.svg")
	_, stderr, code := runLoadgen(t, bin, "--users", "100,1000", "--tests", "cooldown", "--json", out, "--svg", svg,
		"--idle", "200ms", "--lookups", "500", "--duration", "50ms", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	checkSVG(t, svg)
	r := readReport(t, out)
	if r.Environment.Mode != "embedded" || !r.Environment.MemoryMeasured {
		t.Fatalf("environment = %+v", r.Environment)
	}
	// DESIGN.md: a key with a TTL and a small integer value costs ~117 B
	// of used_memory (MEMORY USAGE says ~72).
	x := r.Scenarios[1].Tests[0]
	if m := x.Memory; m == nil || m.BytesPerUser < 90 || m.BytesPerUser > 160 || m.Encoding != "int" {
		t.Errorf("cooldown key: %+v, want 90..160 B/user of an int string", m)
	}
	addr := strings.TrimPrefix(r.Environment.Target, "embedded redis-server on ")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the embedded redis-server on %s still answers after loadgen exited", addr)
	}
}

// checkSVG: the file is one well-formed SVG document naming both panels.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("--svg: %v", err)
	}
	var doc struct {
		XMLName xml.Name
	}
	if err := xml.Unmarshal(data, &doc); err != nil || doc.XMLName.Local != "svg" {
		t.Fatalf("--svg wrote no SVG document (root %q): %v", doc.XMLName.Local, err)
	}
	for _, want := range []string{"Redis memory per user", "Total Redis memory", "study&#39;s estimate"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

// TestLoadgenCluster runs loadgen --cluster 3 --replicas 1 small: it
// starts its own 3+3 Cluster, spreads 10,000 users over it and reports each
// shard: keys adding up to the users, memory per user near one node's (on
// the replicas too), an even spread, and server time per decision; then
// stops every node.
func TestLoadgenCluster(t *testing.T) {
	skipIfShort(t) // -short keeps TestLoadgenEmbedded
	needRedisServer(t)
	bin := commandBin(t, "loadgen")
	out := filepath.Join(t.TempDir(), "r.json")
	stdout, stderr, code := runLoadgen(t, bin, "--cluster", "3", "--replicas", "1", "--users", "10000", "--tests", "hourly", "--json", out,
		"--idle", "300ms", "--lookups", "500", "--duration", "100ms", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	for _, want := range []string{"3-master Redis Cluster", "Per shard", "Spread (max/min keys per shard)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	var r struct {
		Environment struct {
			Mode   string `json:"mode"`
			Target string `json:"target"`
		} `json:"environment"`
		Scenarios []struct {
			Tests []struct {
				Keys   int64   `json:"keys"`
				Spread float64 `json:"spread"`
				Memory *struct {
					BytesPerUser        float64 `json:"bytes_per_user"`
					ReplicaBytesPerUser float64 `json:"replica_bytes_per_user"`
				} `json:"memory"`
				Server struct {
					Decisions        int64   `json:"decisions"`
					CPUUsPerDecision float64 `json:"cpu_us_per_decision"`
				} `json:"server_time"`
				Shards []struct {
					Node             string  `json:"node"`
					Keys             int64   `json:"keys"`
					BytesPerUser     float64 `json:"bytes_per_user"`
					Decisions        int64   `json:"decisions"`
					ScriptCalls      int64   `json:"script_calls"`
					ScriptUs         float64 `json:"script_us_per_decision"`
					CeilingPerSecond float64 `json:"ceiling_decisions_per_second"`
				} `json:"shards"`
			} `json:"tests"`
		} `json:"scenarios"`
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Environment.Mode != "cluster" || len(r.Scenarios) != 1 || len(r.Scenarios[0].Tests) != 1 {
		t.Fatalf("report: %s", data)
	}
	x := r.Scenarios[0].Tests[0]
	if len(x.Shards) != 3 {
		t.Fatalf("%d shards, want 3", len(x.Shards))
	}
	var keys, decisions int64
	for _, s := range x.Shards {
		keys += s.Keys
		decisions += s.Decisions
		// CRC16 spreads 10,000 users to about a third each.
		if s.Keys < 3_000 || s.Keys > 3_700 {
			t.Errorf("shard %s holds %d keys, want about 3,333", s.Node, s.Keys)
		}
		// A 20-entry listpack: ~290-310 B per user on any shard.
		if s.BytesPerUser < 250 || s.BytesPerUser > 360 {
			t.Errorf("shard %s: %.0f B/user, want 250..360", s.Node, s.BytesPerUser)
		}
		if s.Decisions <= 0 || s.ScriptCalls <= 0 || s.ScriptUs <= 0 || s.CeilingPerSecond <= 0 {
			t.Errorf("shard %s: no server time per decision: %+v", s.Node, s)
		}
	}
	if keys != 10_000 || x.Keys != keys {
		t.Errorf("shards hold %d keys (report: %d), want 10,000", keys, x.Keys)
	}
	if decisions != x.Server.Decisions || x.Server.CPUUsPerDecision <= 0 {
		t.Errorf("server time %+v, shards' decisions %d", x.Server, decisions)
	}
	// A replica holds the same keys: about the master's bytes per user.
	if m := x.Memory; m == nil || m.ReplicaBytesPerUser < 250 || m.ReplicaBytesPerUser > 360 {
		t.Errorf("replicas: %+v, want 250..360 B per user per copy", m)
	}
	if x.Spread < 1 || x.Spread > 1.2 {
		t.Errorf("spread %.3f, want 1..1.2", x.Spread)
	}
	// Every node is gone once loadgen has exited.
	addrs := strings.Split(strings.TrimPrefix(r.Environment.Target, "embedded 3-master Redis Cluster (1 replica(s) each) on "), ",")
	if len(addrs) != 6 {
		t.Fatalf("target %q names %d nodes", r.Environment.Target, len(addrs))
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("cluster node %s still answers after loadgen exited", a)
		}
	}
}

// TestLoadgenCtrlC interrupts a long run: loadgen must exit 130 with one
// line on stderr and leave no key behind.
func TestLoadgenCtrlC(t *testing.T) {
	rdb := client(t)
	bin := commandBin(t, "loadgen")
	prefix := uniquePrefix(t, rdb) + "lg:"
	cmd := exec.Command(bin, "--users", "50000", "--redis-url", redisURL, "--prefix", prefix, "--quiet")
	cmd.Env = serveEnv(nil, nil) // loadgen goes by its flags, or starts its own server
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(keysUnder(t, rdb, prefix)) < 500 {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("loadgen wrote no keys in 30 s; stderr: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Before the last line: the warning that used_memory is shared with others.
	interruptLoadgen(t, cmd, &stdout, &stderr)
	if keys := keysUnder(t, rdb, prefix); len(keys) != 0 {
		t.Errorf("%d keys left under %s after Ctrl-C", len(keys), prefix)
	}
}

// interruptLoadgen sends a running loadgen SIGINT (Ctrl-C) and checks how
// it ends: exit status 130, the interruption as the last line on stderr,
// no partial report on stdout.
func interruptLoadgen(t *testing.T, cmd *exec.Cmd, stdout *bytes.Buffer, stderr fmt.Stringer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want status 130; stderr: %s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "loadgen: interrupted") {
		t.Errorf("stderr %q: want a last line about the interruption", stderr)
	}
	if stdout.Len() != 0 {
		t.Errorf("a partial report on stdout: %q", stdout)
	}
}

// TestLoadgenUnreachable: a Redis that does not answer is one line on
// stderr and exit status 2.
func TestLoadgenUnreachable(t *testing.T) {
	needRedis(t)
	bin := commandBin(t, "loadgen")
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runLoadgen(t, bin, "--redis-url", fmt.Sprintf("redis://127.0.0.1:%d", port))
	msg := strings.TrimSpace(stderr)
	if code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, "unreachable") || stdout != "" {
		t.Errorf("exit %d, stderr %q, stdout %q: want exit 2 and one line naming the unreachable Redis", code, msg, stdout)
	}
	_, stderr, code = runLoadgen(t, bin, "--users", "none")
	if code != 2 || !strings.Contains(stderr, "-users") {
		t.Errorf("bad flag: exit %d, stderr %q", code, stderr)
	}
}

// TestLoadgenClusterCtrlC interrupts a --cluster run of a million users
// while it writes them: exit 130 with one line, and every node stopped.
func TestLoadgenClusterCtrlC(t *testing.T) {
	skipIfShort(t) // -short keeps TestLoadgenCtrlC
	needRedisServer(t)
	bin := commandBin(t, "loadgen")
	cmd := exec.Command(bin, "--cluster", "3", "--users", "1M", "--tests", "hourly")
	cmd.Env = serveEnv(nil, nil) // loadgen goes by its flags, or starts its own server
	var stdout bytes.Buffer
	stderr := &redisproc.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The status line names the nodes once the cluster is up.
	var addrs []string
	deadline := time.Now().Add(60 * time.Second)
	for addrs == nil {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no cluster after 60 s; stderr: %s", stderr.String())
		}
		if _, after, ok := strings.Cut(stderr.String(), "Redis Cluster on "); ok {
			list, _, _ := strings.Cut(after, ", Redis")
			addrs = strings.Split(list, ",")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addrs[0]})
	defer rdb.Close()
	// Wait until users are being written, then interrupt.
	for n := int64(0); n < 1000; {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no users written; stderr: %s", stderr.String())
		}
		n, _ = rdb.DBSize(context.Background()).Result()
		time.Sleep(10 * time.Millisecond)
	}
	interruptLoadgen(t, cmd, &stdout, stderr)
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("cluster node %s still answers after Ctrl-C", a)
		}
	}
}
