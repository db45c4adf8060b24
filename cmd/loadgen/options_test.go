package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/cli"
)

func TestParseArgs(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	type want struct {
		users    []int
		tests    []string
		idle     time.Duration
		url      string
		urlFrom  string
		prefix   string
		help     bool
		errParts []string // all must appear in the error; nil: no error
	}
	for _, tc := range []struct {
		name string
		args []string
		env  func(string) string
		want want
	}{
		{"defaults: the study's four scenarios, three tests, embedded server", nil, env(),
			want{users: []int{100, 1000, 10000, 50000}, tests: allTests, idle: 2 * time.Second}},
		{"one size", []string{"--users", "50000"}, env(),
			want{users: []int{50000}, tests: allTests, idle: 2 * time.Second}},
		{"repeatable, comma lists, k suffix, duplicates dropped", []string{"-users=100,1000", "--users", "10k,1_000"}, env(),
			want{users: []int{100, 1000, 10000}, tests: allTests, idle: 2 * time.Second}},
		{"tests run in the study's order", []string{"--tests", "full,cooldown"}, env(),
			want{users: defaultUsers, tests: []string{testCooldown, testFull}, idle: 2 * time.Second}},
		{"idle", []string{"--idle", "500ms"}, env(),
			want{users: defaultUsers, tests: allTests, idle: 500 * time.Millisecond}},
		{"FLOODGATE_REDIS_URL wins over REDIS_URL", nil, env("FLOODGATE_REDIS_URL", "redis://a:1", "REDIS_URL", "redis://b:2"),
			want{users: defaultUsers, tests: allTests, idle: 2 * time.Second, url: "redis://a:1", urlFrom: "FLOODGATE_REDIS_URL"}},
		{"REDIS_URL alone", nil, env("REDIS_URL", "redis://b:2"),
			want{users: defaultUsers, tests: allTests, idle: 2 * time.Second, url: "redis://b:2", urlFrom: "REDIS_URL"}},
		{"--redis-url overrides the environment", []string{"--redis-url", "redis://c:3"}, env("REDIS_URL", "redis://b:2"),
			want{users: defaultUsers, tests: allTests, idle: 2 * time.Second, url: "redis://c:3", urlFrom: "--redis-url"}},
		{"chosen prefix", []string{"--prefix", "bench-1:"}, env(),
			want{users: defaultUsers, tests: allTests, idle: 2 * time.Second, prefix: "bench-1:"}},
		{"a cluster ignores REDIS_URL", []string{"--cluster", "3"}, env("REDIS_URL", "redis://b:2"),
			want{users: defaultUsers, tests: allTests, idle: 2 * time.Second}},
		{"help", []string{"-h"}, env(), want{help: true}},
		{"help long", []string{"--help"}, env(), want{help: true}},

		{"zero users", []string{"--users", "0"}, env(), want{errParts: []string{"-users", "between 1 and"}}},
		{"negative users", []string{"--users", "-5"}, env(), want{errParts: []string{"-users", "between 1 and"}}},
		{"users not a number", []string{"--users", "lots"}, env(), want{errParts: []string{"-users", `"lots"`}}},
		{"too many users", []string{"--users", "20M"}, env(), want{errParts: []string{"-users"}}},
		{"unknown test", []string{"--tests", "hourly,weekly"}, env(), want{errParts: []string{`"weekly"`, "cooldown, hourly, full"}}},
		{"idle too short", []string{"--idle", "10ms"}, env(), want{errParts: []string{"-idle 10ms", "between"}}},
		{"idle not a duration", []string{"--idle", "2"}, env(), want{errParts: []string{"-idle"}}},
		{"goroutines", []string{"--goroutines", "0"}, env(), want{errParts: []string{"-goroutines 0"}}},
		{"lookups", []string{"--lookups", "0"}, env(), want{errParts: []string{"-lookups 0"}}},
		{"duration", []string{"--duration", "1h"}, env(), want{errParts: []string{"-duration 1h0m0s"}}},
		{"seed not a number", []string{"--seed", "x"}, env(), want{errParts: []string{"-seed"}}},
		{"unknown flag", []string{"--user", "5"}, env(), want{errParts: []string{"-user"}}},
		{"positional argument", []string{"50000"}, env(), want{errParts: []string{`"50000"`, "flag"}}},
		{"prefix with a brace", []string{"--prefix", "a{b}:"}, env(), want{errParts: []string{"-prefix", `'{'`}}},
		{"prefix with a glob", []string{"--prefix", "a*"}, env(), want{errParts: []string{"-prefix", `'*'`}}},
		{"empty prefix", []string{"--prefix", ""}, env(), want{errParts: []string{"-prefix", "empty"}}},
		{"long prefix", []string{"--prefix", strings.Repeat("p", 41)}, env(), want{errParts: []string{"-prefix", "41 bytes"}}},
		{"empty --redis-url", []string{"--redis-url", " "}, env("REDIS_URL", "redis://b:2"), want{errParts: []string{"-redis-url is empty"}}},
		{"a cluster of 2", []string{"--cluster", "2"}, env(), want{errParts: []string{"-cluster 2", "3 to 16"}}},
		{"a cluster of 100", []string{"--cluster", "100"}, env(), want{errParts: []string{"-cluster 100"}}},
		{"replicas without a cluster", []string{"--replicas", "1"}, env(), want{errParts: []string{"-replicas 1", "only with -cluster"}}},
		{"too many replicas", []string{"--cluster", "3", "--replicas", "3"}, env(), want{errParts: []string{"-replicas 3", "between 0 and 2"}}},
		{"a cluster and a URL", []string{"--cluster", "3", "--redis-url", "redis://a:1"}, env(), want{errParts: []string{"-cluster", "-redis-url"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseArgs(tc.args, tc.env)
			if tc.want.errParts != nil {
				if err == nil {
					t.Fatalf("no error, want one with %q", tc.want.errParts)
				}
				msg := err.Error()
				if !errors.Is(err, cli.ErrUsage) || cli.ExitCode(err) != 2 {
					t.Errorf("error %q is not a usage error with exit status 2 (got %d)", msg, cli.ExitCode(err))
				}
				if !strings.HasPrefix(msg, "loadgen: ") || strings.Contains(msg, "\n") {
					t.Errorf("error %q: want one line starting with \"loadgen: \"", msg)
				}
				for _, p := range tc.want.errParts {
					if !strings.Contains(msg, p) {
						t.Errorf("error %q does not mention %q", msg, p)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if o.help != tc.want.help {
				t.Fatalf("help = %v, want %v", o.help, tc.want.help)
			}
			if o.help {
				return
			}
			if !slices.Equal(o.users, tc.want.users) {
				t.Errorf("users = %v, want %v", o.users, tc.want.users)
			}
			if !slices.Equal(o.tests, tc.want.tests) {
				t.Errorf("tests = %v, want %v", o.tests, tc.want.tests)
			}
			if o.idle != tc.want.idle {
				t.Errorf("idle = %v, want %v", o.idle, tc.want.idle)
			}
			if o.redisURL != tc.want.url || o.urlFrom != tc.want.urlFrom {
				t.Errorf("url = %q from %q, want %q from %q", o.redisURL, o.urlFrom, tc.want.url, tc.want.urlFrom)
			}
			if tc.want.prefix != "" && (o.prefix != tc.want.prefix || !o.prefixSet) {
				t.Errorf("prefix = %q (set %v), want %q", o.prefix, o.prefixSet, tc.want.prefix)
			}
			if tc.want.prefix == "" && (o.prefixSet || checkPrefix(o.prefix) != nil) {
				t.Errorf("default prefix %q (set %v) is not a valid random prefix", o.prefix, o.prefixSet)
			}
			if o.goroutines != 32 || o.lookups != 10_000 || o.seed != 1 || o.duration != 300*time.Millisecond {
				t.Errorf("defaults: goroutines %d, lookups %d, seed %d, duration %v", o.goroutines, o.lookups, o.seed, o.duration)
			}
		})
	}
}

// The default prefix must cost what production's "floodgate:" costs, so
// bytes per user mean the same thing.
func TestRandomPrefixIsAsLongAsProduction(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		p := randomPrefix()
		if len(p) != len("floodgate:") {
			t.Errorf("prefix %q has %d bytes, want %d", p, len(p), len("floodgate:"))
		}
		if err := checkPrefix(p); err != nil {
			t.Errorf("prefix %q: %v", p, err)
		}
		seen[p] = true
	}
	if len(seen) < 15 {
		t.Errorf("20 draws gave only %d distinct prefixes", len(seen))
	}
}

func TestParseCount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"100", 100, true},
		{"10k", 10_000, true},
		{"10K", 10_000, true},
		{"1M", 1_000_000, true},
		{"", 0, false},
		{"k", 0, false},
		{"1.5k", 0, false},
		{"99999999999", 0, false},
	} {
		got, err := parseCount(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseCount(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestUsageListsEveryFlag(t *testing.T) {
	var b strings.Builder
	writeUsage(&b)
	for _, f := range []string{"-users", "-tests", "-idle", "-seed", "-goroutines", "-lookups", "-duration", "-json", "-markdown", "-prefix", "-redis-url", "-quiet", "-svg", "-detail", "-cluster", "-replicas"} {
		if !strings.Contains(b.String(), f) {
			t.Errorf("usage does not mention %s", f)
		}
	}
}
