package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/limiter"
)

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(out.String(), "  "+c.name+" ") {
			t.Errorf("help lacks %q:\n%s", c.name, out.String())
		}
		if c.run == nil {
			continue
		}
		var o, e bytes.Buffer
		if err := Run(context.Background(), []string{c.name, "--help"}, &o, &e); err != nil {
			t.Errorf("%s --help: %v", c.name, err)
		}
		if !strings.Contains(e.String(), "Usage: floodgate "+c.name) || !strings.Contains(e.String(), "-config") {
			t.Errorf("%s --help:\n%s", c.name, e.String())
		}
		o.Reset()
		if err := Run(context.Background(), []string{"help", c.name}, &o, &o); err != nil || !strings.Contains(o.String(), "Usage: floodgate "+c.name) {
			t.Errorf("help %s: %v\n%s", c.name, err, o.String())
		}
	}
	for _, args := range [][]string{nil, {"frobnicate"}, {"user"}, {"user", "a", "b"}, {"reset"}, {"endpoints", "llm"}, {"slots"}, {"serve", "extra"}, {"user", "--nope", "a"}, {"help", "nope"}} {
		err := Run(context.Background(), args, &out, &errOut)
		if err == nil || cli.ExitCode(err) != 2 {
			t.Errorf("%q: %v (exit %d), want a usage error", args, err, cli.ExitCode(err))
		}
	}
}

// The operator commands on one Redis: what serve's clients did shows up,
// reset clears it.
func TestOpsCommands(t *testing.T) {
	t.Setenv("FLOODGATE_MAX_CONCURRENT_USERS", "3")
	cfg, err := (&settingsFlags{}).load()
	if err != nil {
		t.Fatal(err)
	}
	mr, _, lim := testLimiter(t, cfg) // a bot beside the commands
	t.Setenv("FLOODGATE_REDIS_URL", "redis://"+mr.Addr())
	ctx := context.Background()
	if _, err := lim.Allow(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := Run(ctx, args, &out, &errOut); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	if out := run("user", "alice"); !strings.Contains(out, "denied (cooldown)") || !strings.Contains(out, "window entries  1") || !strings.Contains(out, "remaining       19 of 20") {
		t.Fatalf("user:\n%s", out)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(run("user", "--json", "alice")), &st); err != nil || st["entries"] != 1.0 || st["reason"] != "cooldown" {
		t.Fatalf("user --json: %v %v", st, err)
	}
	if out := run("reset", "alice"); !strings.Contains(out, `user "alice" reset`) {
		t.Fatalf("reset: %s", out)
	}
	if out := run("user", "alice"); !strings.Contains(out, "would be allowed") || !strings.Contains(out, "window entries  0") {
		t.Fatalf("user after reset:\n%s", out)
	}

	b, err := lim.Backoff("llm", limiter.BackoffSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Failure(ctx, "http://gpu-1:8000"); err != nil {
		t.Fatal(err)
	}
	out := run("endpoints", "llm", "http://gpu-1:8000", "http://gpu-2:8000")
	if !strings.Contains(out, `llm "http://gpu-1:8000": open (retry after`) || !strings.Contains(out, `llm "http://gpu-2:8000": closed`) {
		t.Fatalf("endpoints:\n%s", out)
	}
	var eps []map[string]any
	if err := json.Unmarshal([]byte(run("endpoints", "--json", "llm", "http://gpu-1:8000", "http://gpu-2:8000")), &eps); err != nil || len(eps) != 2 ||
		eps[0]["endpoint"] != "http://gpu-1:8000" || eps[0]["state"] != "open" || eps[0]["failures"] != 1.0 || eps[1]["state"] != "closed" {
		t.Fatalf("endpoints --json: %v %v", eps, err)
	}
	pool, err := lim.Slots("gpu", limiter.SlotsSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.TryAcquire(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if out := run("slots", "gpu"); !strings.Contains(out, `pool "gpu": 1 of 3 slots in use, 0 waiting`) {
		t.Fatalf("slots: %s", out)
	}
	var ps map[string]any
	if err := json.Unmarshal([]byte(run("slots", "--json", "gpu")), &ps); err != nil || ps["in_use"] != 1.0 || ps["size"] != 3.0 {
		t.Fatalf("slots --json: %v %v", ps, err)
	}
}

func TestOpsWithoutRedis(t *testing.T) {
	t.Setenv("FLOODGATE_REDIS_URL", "")
	t.Setenv("REDIS_URL", "")
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"user", "alice"}, &out, &errOut)
	if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "no Redis") {
		t.Fatalf("no Redis: %v", err)
	}
	t.Setenv("FLOODGATE_REDIS_URL", "redis://:s3cretpass@127.0.0.1:1")
	t.Setenv("FLOODGATE_REDIS_TIMEOUT", "200ms")
	start := time.Now()
	err = Run(context.Background(), []string{"user", "alice"}, &out, &errOut)
	if err == nil || cli.ExitCode(err) != 1 || !strings.Contains(err.Error(), "Redis did not answer") || strings.Contains(err.Error(), "s3cretpass") {
		t.Fatalf("unreachable Redis: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

// floodgate config contacts Redis only with --redis: without it, an
// unreachable Redis changes nothing; with it, no Redis URL is a usage
// error. (What it prints on a real Redis is tested in
// integration_test/config_test.go: miniredis has no maxmemory-policy.)
func TestConfigRedisFlag(t *testing.T) {
	t.Setenv("FLOODGATE_REDIS_URL", "redis://127.0.0.1:1")
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"config"}, &out, &errOut); err != nil || strings.Contains(out.String(), "maxmemory-policy") {
		t.Fatalf("config without --redis: %v\n%s", err, out.String())
	}
	t.Setenv("FLOODGATE_REDIS_URL", "")
	t.Setenv("REDIS_URL", "")
	if err := Run(context.Background(), []string{"config", "--redis"}, &out, &errOut); err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "no Redis") {
		t.Fatalf("config --redis without a Redis URL: %v", err)
	}
}

// The environment overrides the file; `floodgate config` prints the
// result with the password hidden.
func TestConfigCommandEnvOverridesFile(t *testing.T) {
	t.Setenv("FLOODGATE_USER_COOLDOWN", "3s")
	t.Setenv("FLOODGATE_REDIS_URL", "redis://:hunter2secret@redis.example:6379/0")
	t.Setenv("FLOODGATE_HTTP_TOKEN", "tok-0123456789abcdef")
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"config", "--config", "../../internal/configfile/testdata/config.yaml"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"FLOODGATE_USER_COOLDOWN                  3s",
		"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR     20",
		"FLOODGATE_API_RATES                      igdb=4/1,tmdb=0.5/1,wikipedia=1/1",
		"redis.example:6379",
		"FLOODGATE_HTTP_TOKEN                     (set, hidden)",
		"cleanup_interval is not needed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("config output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "hunter2secret") || strings.Contains(text, "tok-0123456789abcdef") {
		t.Fatalf("config output shows a secret:\n%s", text)
	}
}

func TestConfigCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rate_limiting:\n  user_cooldwn: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.yaml")
	if err := os.WriteFile(invalid, []byte("rate_limiting:\n  max_requests_per_user_hour: 500\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "--config", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"config", "--config", bad}, `unknown key rate_limiting.user_cooldwn`},
		{[]string{"config", "--config", invalid}, "MaxRequestsPerUserHour"},
		{[]string{"config", "extra"}, `config takes no arguments, got ["extra"]`},
		{[]string{"serve", "extra"}, `serve takes no arguments, got ["extra"]`},
	} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), tc.args, &out, &errOut)
		if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (exit %d), want %q", tc.args, err, cli.ExitCode(err), tc.want)
		}
	}
	t.Setenv("FLOODGATE_SLOT_LEASE", "soon")
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"config"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "FLOODGATE_SLOT_LEASE") {
		t.Fatalf("bad variable: %v", err)
	}
}
