package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/cli"
)

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
