package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/internal/redisproc"
)

func init() { redis.SetLogger(cli.QuietLogger{}) }

// quick keeps Run short on miniredis: the figures are not the point here.
var quick = []string{"--lookups", "200", "--duration", "50ms", "--idle", "100ms", "--quiet"}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{usagef("bad"), 2},
		{fmt.Errorf("%w: redis://x: refused", errUnreachable), 2},
		{fmt.Errorf("loadgen: interrupted: %w", context.Canceled), 130},
		{errors.New("loadgen: something else"), 1},
	} {
		if got := cli.ExitCode(tc.err); got != tc.want {
			t.Errorf("cli.ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestRunRejectsBadInputBeforeTouchingRedis(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad flag", []string{"--users", "0"}, "-users"},
		{"unknown flag", []string{"--bogus"}, "-bogus"},
		{"json in a missing directory", []string{"--json", "/nonexistent-dir/x.json"}, "/nonexistent-dir"},
		{"markdown in a missing directory", []string{"--markdown", "/nonexistent-dir/x.md"}, "/nonexistent-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A Redis that would notice any command.
			m := miniredis.RunT(t)
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), append(tc.args, "--redis-url", "redis://"+m.Addr()), &stdout, &stderr)
			if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 naming %q", err, cli.ExitCode(err), tc.want)
			}
			if stdout.Len() != 0 || m.CommandCount() != 0 {
				t.Errorf("stdout %q, %d Redis commands: want nothing", stdout.String(), m.CommandCount())
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), []string{"-h"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "Usage: loadgen") {
		t.Errorf("help = %q", stdout.String())
	}
}

func TestRunUnreachableRedis(t *testing.T) {
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("redis://:hunter2@127.0.0.1:%d", port)
	var stdout, stderr bytes.Buffer
	err = Run(context.Background(), []string{"--redis-url", url}, &stdout, &stderr)
	if cli.ExitCode(err) != 2 {
		t.Fatalf("err = %v (exit %d), want exit 2", err, cli.ExitCode(err))
	}
	msg := cli.OneLine(err.Error())
	for _, want := range []string{"unreachable", fmt.Sprintf("127.0.0.1:%d", port), "--redis-url"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("error %q shows the password", msg)
	}
}

func TestRunBadRedisURL(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		from string
	}{
		{[]string{"--redis-url", "redis://:hunter2@127.0.0.1:notaport"}, "", "--redis-url"},
		{nil, "redis://:hunter2@127.0.0.1:notaport", "REDIS_URL"},
	} {
		t.Setenv("FLOODGATE_REDIS_URL", "")
		t.Setenv("REDIS_URL", tc.env)
		var stdout, stderr bytes.Buffer
		err := Run(context.Background(), tc.args, &stdout, &stderr)
		if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.from) {
			t.Errorf("%v: err = %v (exit %d), want exit 2 naming %s", tc.args, err, cli.ExitCode(err), tc.from)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q shows the password", err)
		}
	}
}

// TestRunOnMiniredis runs the whole flow against a Redis that reports no
// memory: every phase runs, memory and expiry are n/a, keys are purged.
func TestRunOnMiniredis(t *testing.T) {
	m := miniredis.RunT(t)
	m.Set("other:key", "untouched")
	dir := t.TempDir()
	jsonFile, mdFile := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.md")
	var stdout, stderr bytes.Buffer
	args := append([]string{"--users", "30,50", "--redis-url", "redis://" + m.Addr(), "--json", jsonFile, "--markdown", mdFile, "--goroutines", "4"}, quick...)
	if err := Run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, stderr.String())
	}
	if keys := m.Keys(); len(keys) != 1 || keys[0] != "other:key" {
		t.Errorf("keys after the run: %v, want only other:key", keys)
	}
	if !strings.Contains(stderr.String(), "blurs") || !strings.Contains(stderr.String(), "no INFO memory") {
		t.Errorf("stderr lacks the shared-Redis and no-memory warnings: %q", stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"30  cooldown", "50  full", "n/a", "No verdict"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	var rep Report
	data, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Environment.Mode != modeURL || rep.Environment.MemoryMeasured || rep.Environment.Lookups != 200 {
		t.Errorf("environment = %+v", rep.Environment)
	}
	if len(rep.Scenarios) != 2 {
		t.Fatalf("%d scenarios, want 2", len(rep.Scenarios))
	}
	for _, sc := range rep.Scenarios {
		if len(sc.Tests) != 3 {
			t.Fatalf("%d users: %d tests, want 3", sc.Users, len(sc.Tests))
		}
		for _, r := range sc.Tests {
			name := fmt.Sprintf("%d users, %s", sc.Users, r.Test)
			if r.Memory != nil || r.Expiry != nil || r.Acceptance.RAM.Status != "n/a" {
				t.Errorf("%s: memory %v, expiry %v, RAM %s: want n/a without INFO memory", name, r.Memory, r.Expiry, r.Acceptance.RAM.Status)
			}
			// One key per user; the full test adds two API buckets
			// (wikipedia, igdb), the LLM pool's holders and two endpoints.
			shared := 0
			if r.Test == testFull {
				shared = 5
			}
			if r.Keys != int64(sc.Users+shared) || r.Shared.Keys != shared || r.Purge.Keys != r.Keys {
				t.Errorf("%s: %d keys (%d shared), purged %d; want %d users + %d shared", name, r.Keys, r.Shared.Keys, r.Purge.Keys, sc.Users, shared)
			}
			if r.Latency.CacheSize == 0 || r.Latency.CachedP50us <= 0 {
				t.Errorf("%s: no deny-cache pass: %+v", name, r.Latency)
			}
			// 200 lookups on 30 or 50 users denied for an hour: after each
			// user's first denial the rest come from the cache.
			if r.Test != testFull && r.Latency.CachedFraction < 0.5 {
				t.Errorf("%s: %.0f%% of lookups cached, want most", name, 100*r.Latency.CachedFraction)
			}
			if r.Latency.Lookups != 200 || r.Latency.P50us <= 0 || r.Latency.P99us < r.Latency.P50us || r.Latency.P999us < r.Latency.P99us {
				t.Errorf("%s: latency %+v", name, r.Latency)
			}
			th := r.Throughput
			if th.Goroutines != 4 || th.Ratio1 <= 0 || th.RatioN <= 0 || th.PingP50us <= 0 {
				t.Errorf("%s: throughput %+v", name, th)
			}
			if r.Acceptance.Lookup.Status == "n/a" || r.Acceptance.Cleanup.Status == "n/a" {
				t.Errorf("%s: acceptance %+v", name, r.Acceptance)
			}
		}
	}
	md, err := os.ReadFile(mdFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(md, []byte("| users | test |")) {
		t.Errorf("markdown has no table:\n%s", md)
	}
}

// A prefix the user chose but that already holds keys is refused, and
// nothing under it is deleted.
func TestRunRefusesAPrefixInUse(t *testing.T) {
	m := miniredis.RunT(t)
	m.Set("mine:precious", "1")
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), append([]string{"--users", "10", "--prefix", "mine:", "--redis-url", "redis://" + m.Addr()}, quick...), &stdout, &stderr)
	if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "1 keys already exist") {
		t.Fatalf("err = %v, want exit 2 about existing keys", err)
	}
	if !m.Exists("mine:precious") {
		t.Error("loadgen deleted a key it did not write")
	}
}

// Ctrl-C: Run stops, deletes its keys and says so; exit status 130.
func TestRunInterruptedCleansUp(t *testing.T) {
	m := miniredis.RunT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for len(m.Keys()) < 100 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	var stdout, stderr bytes.Buffer
	err := Run(ctx, append([]string{"--users", "200000", "--redis-url", "redis://" + m.Addr()}, quick...), &stdout, &stderr)
	if cli.ExitCode(err) != 130 || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("err = %v (exit %d), want interrupted, exit 130", err, cli.ExitCode(err))
	}
	if keys := m.Keys(); len(keys) != 0 {
		t.Errorf("%d keys left after Ctrl-C, e.g. %q", len(keys), keys[0])
	}
	if stdout.Len() != 0 {
		t.Errorf("a partial report was printed: %q", stdout.String())
	}
}

func TestTargetPurgeOnlyTouchesThePrefix(t *testing.T) {
	m := miniredis.RunT(t)
	for i := 0; i < 2500; i++ {
		m.Set(fmt.Sprintf("p:{u:user_%05d}:w", i), "x")
	}
	m.Set("p2:kept", "x")
	m.Set("q:p:kept", "x")
	tg := &target{mode: modeURL, dial: addrDialer(m.Addr())}
	ctx := context.Background()
	if keys, err := tg.countKeysByNode(ctx, "p:"); err != nil || sum(keys) != 2500 {
		t.Fatalf("countKeysByNode = %v, %v; want 2500", keys, err)
	}
	n, took, err := tg.purge(ctx, "p:")
	if err != nil || n != 2500 || took <= 0 {
		t.Fatalf("purge = %d in %v, %v; want 2500", n, took, err)
	}
	if keys := m.Keys(); len(keys) != 2 {
		t.Errorf("keys left: %v, want p2:kept and q:p:kept", keys)
	}
}

func TestParseInfo(t *testing.T) {
	info := "# Memory\r\nused_memory:1166560\r\nused_memory_human:1.11M\r\nmem_allocator:jemalloc-5.3.0\r\n\r\n# Stats\r\nexpired_keys:42\r\nweird line\r\n"
	got := parseInfo(info)
	for k, want := range map[string]string{"used_memory": "1166560", "mem_allocator": "jemalloc-5.3.0", "expired_keys": "42"} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if len(got) != 4 {
		t.Errorf("parsed %d fields, want 4: %v", len(got), got)
	}
}

// --svg on a server without INFO memory is refused before any user is
// written: there would be nothing to draw.
func TestRunSVGNeedsMemory(t *testing.T) {
	m := miniredis.RunT(t)
	svg := filepath.Join(t.TempDir(), "m.svg")
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), append([]string{"--users", "10", "--svg", svg, "--redis-url", "redis://" + m.Addr()}, quick...), &stdout, &stderr)
	if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "-svg") || !strings.Contains(err.Error(), "no memory") {
		t.Fatalf("err = %v, want exit 2 naming -svg and the missing memory figures", err)
	}
	if _, err := os.Stat(svg); !os.IsNotExist(err) {
		t.Errorf("an SVG was written: %v", err)
	}
	if len(m.Keys()) != 0 {
		t.Errorf("keys written: %v", m.Keys())
	}
}

// Without redis-server on PATH loadgen falls back to miniredis: its first
// line says what it cannot measure and the one command that fixes it, and
// it prints only key counts.
func TestRunWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("FLOODGATE_REDIS_URL", "")
	t.Setenv("REDIS_URL", "")
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), append([]string{"--users", "20", "--tests", "cooldown,hourly"}, quick...), &stdout, &stderr); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, stderr.String())
	}
	out := stdout.String()
	first, rest, _ := strings.Cut(out, "\n")
	if first != notMeasured || !strings.Contains(first, "apt-get install -y redis-server") {
		t.Errorf("first line %q, want %q", first, notMeasured)
	}
	if !strings.Contains(stderr.String(), "apt-get install -y redis-server") {
		t.Errorf("stderr does not say how to get a real Redis: %q", stderr.String())
	}
	for _, want := range []string{"keys/user", "20  cooldown", "1.00", "No verdict"} {
		if !strings.Contains(rest, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"B/user", "p50", "x PING", "PASS", "FAIL", "µs"} {
		if strings.Contains(rest, not) {
			t.Errorf("output shows %q, which miniredis cannot measure:\n%s", not, out)
		}
	}
}

// --cluster without redis-server: exit 2, naming the fix.
func TestRunClusterWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), append([]string{"--cluster", "3", "--users", "10"}, quick...), &stdout, &stderr)
	if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "apt-get install -y redis-server") {
		t.Fatalf("err = %v (exit %d), want exit 2 naming apt-get install -y redis-server", err, cli.ExitCode(err))
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", stdout.String())
	}
}
