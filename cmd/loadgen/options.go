package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/internal/cli"
)

// Bounds on flags: beyond them a run would take hours or measure nothing.
const (
	maxUsers      = 10_000_000
	maxGoroutines = 1024
	maxLookups    = 10_000_000
	minIdle       = 100 * time.Millisecond
	maxIdle       = 10 * time.Minute
	minDuration   = 50 * time.Millisecond
	maxDuration   = time.Minute
	maxPrefixLen  = 40
	maxCluster    = 16 // masters: each is a redis-server on this machine
)

// usagef is a one-line complaint about the command line: exit status 2.
func usagef(format string, args ...any) error {
	return cli.Usagef("loadgen: "+format+" (see loadgen -help)", args...)
}

// options is the parsed command line.
type options struct {
	users      []int
	tests      []string
	idle       time.Duration
	seed       uint64
	goroutines int
	lookups    int
	duration   time.Duration
	jsonFile   string
	mdFile     string
	svgFile    string
	detail     bool
	cluster    int // masters of an embedded Redis Cluster; 0: none
	replicas   int // replicas per master of that Cluster
	prefix     string
	prefixSet  bool // --prefix given: refuse to run if keys exist under it
	redisURL   string
	urlFrom    string // where redisURL came from: "--redis-url", "FLOODGATE_REDIS_URL", "REDIS_URL" or "" (embedded)
	quiet      bool
	help       bool
	args       []string // the command line, for the report
}

// intList is a repeatable flag of comma-separated positive integers.
type intList struct {
	vals []int
	set  bool
}

func (l *intList) String() string {
	parts := make([]string, len(l.vals))
	for i, v := range l.vals {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}

func (l *intList) Set(s string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(strings.ReplaceAll(part, "_", ""))
		n, err := parseCount(part)
		if err != nil {
			return err
		}
		if n < 1 || n > maxUsers {
			return fmt.Errorf("%d users: must be between 1 and %d", n, maxUsers)
		}
		if !slices.Contains(l.vals, n) {
			l.vals = append(l.vals, n)
		}
	}
	return nil
}

// parseCount reads 50000, 50_000, 50k or 1M.
func parseCount(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1_000, s[:len(s)-1]
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "M"):
		mult, s = 1_000_000, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > maxUsers/mult {
		return 0, fmt.Errorf("%q is not a count like 1000 or 10k", s)
	}
	return n * mult, nil
}

// stringList is a repeatable flag of comma-separated words.
type stringList struct {
	vals []string
	set  bool
}

func (l *stringList) String() string { return strings.Join(l.vals, ",") }

func (l *stringList) Set(s string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		if !slices.Contains(allTests, part) {
			return fmt.Errorf("unknown test %q: want %s", part, strings.Join(allTests, ", "))
		}
		if !slices.Contains(l.vals, part) {
			l.vals = append(l.vals, part)
		}
	}
	return nil
}

const usageText = `loadgen: the RAM benchmark of benchmark-cooldowns-ram.md ("the study") on
real Redis. For each number of users it runs three tests and answers the
study's question: is RAM under 10 MB for 10K users (then implement per-user
cooldowns)? It prints one table and a verdict; --detail adds every figure.

Tests (state written through the library, as live traffic leaves it):
  cooldown  one key per user: a 1 h cooldown, written by Allow
  hourly    one sorted set per user: 20 requests over the last hour (Import)
  full      the defaults (10 s cooldown + 20/h), 5-20 requests per user, plus
            the shared state: 2 API buckets, 7 LLM slots held, 2 endpoint failures

How each figure is taken:
  B/user    growth of INFO used_memory / users, read after Redis settled and
            finished rehashing, through loadgen's only open connection
  p50       --lookups Allow calls on random existing users, one at a time,
            deny cache off (each is a Redis round trip); "cache" replays them
            with the local deny cache on
  x PING    decisions/s at --goroutines over PING/s, in 6 alternating slices
            each (medians), so noise from elsewhere lands on both. One path
            per test: cooldown rows are cooldown denials (the cheapest path),
            hourly rows window denials at 20 of 20, full rows mostly allowed
            decisions on windows of 5-19 entries. No peer library runs here:
            BenchmarkPeers (docs/benchmarks.md, Speed) compares them per path
  script µs server time per decision at --goroutines: INFO commandstats usec
            of the script commands / decisions; "CPU µs" is the main thread's
            CPU (INFO cpu) / decisions, and "ceiling" 1e6 / CPU µs: what one
            shard sustains when Redis, not the client, is the bottleneck
  hot keys  the full test's shared keys (API bucket, LLM pool, endpoint), each
            driven alone at --goroutines: one key, so one shard, by design
  purge     SCAN MATCH prefix* + UNLINK of the test's keys
  expiry    the users written again with TTLs of --idle; time until Redis has
            expired them all (INFO expired_keys) and given the memory back
  PASS/FAIL the study's acceptance row: RAM (total), cleanup (purge), lookup (p50)

Where: without --redis-url, FLOODGATE_REDIS_URL or REDIS_URL it starts a
throwaway redis-server (--cluster N: an N-master Redis Cluster) on loopback;
without redis-server on PATH, an in-process miniredis that can only count keys
(` + installHint + ` fixes that). Against your own Redis
it writes and deletes only keys under its own prefix.

Exit status: 0 even when a row FAILs (a finding), 2 for a bad flag or an
unreachable Redis, 130 after Ctrl-C; keys and servers are cleaned up always.

Usage: loadgen [flags]

`

func newFlagSet(o *options, users *intList, tests *stringList) *flag.FlagSet {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(users, "users", "numbers of users, comma-separated or repeated (10k and 1M work)")
	fs.Var(tests, "tests", "tests to run: cooldown, hourly, full (comma-separated)")
	fs.DurationVar(&o.idle, "idle", 2*time.Second, "TTL of the idle-expiry pass: keys written with it, then Redis's reclaim is timed")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random users, request times and lookups")
	fs.IntVar(&o.goroutines, "goroutines", 32, "concurrency of the N-goroutine throughput phase")
	fs.IntVar(&o.lookups, "lookups", 10_000, "random lookups (Allow on existing users) timed one by one")
	fs.DurationVar(&o.duration, "duration", 300*time.Millisecond, "length of each N-goroutine throughput phase (decisions, then PING)")
	fs.StringVar(&o.jsonFile, "json", "", "write every figure and the environment as JSON to `FILE`")
	fs.StringVar(&o.mdFile, "markdown", "", "write every table as Markdown to `FILE`")
	fs.StringVar(&o.svgFile, "svg", "", "draw memory per user and total memory against users, beside the study's estimates, to `FILE`")
	fs.BoolVar(&o.detail, "detail", false, "print every table: memory, latency, throughput, speed per path, cleanup, hot keys, shards")
	fs.IntVar(&o.cluster, "cluster", 0, "start an embedded Redis Cluster of `N` masters (3 or more) and report per shard")
	fs.IntVar(&o.replicas, "replicas", 0, "with -cluster: `R` replicas per master (0 to 2), their memory reported too")
	fs.StringVar(&o.prefix, "prefix", "", "key prefix (default \"fgl:<random>:\", as long as the production \"floodgate:\")")
	fs.StringVar(&o.redisURL, "redis-url", "", "Redis to measure (overrides FLOODGATE_REDIS_URL and REDIS_URL; comma-separate Cluster nodes)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar and no status lines on stderr")
	fs.BoolVar(&o.help, "help", false, "show this help")
	fs.BoolVar(&o.help, "h", false, "show this help")
	return fs
}

// writeUsage prints the help text and the flags.
func writeUsage(w io.Writer) {
	var o options
	fs := newFlagSet(&o, &intList{vals: defaultUsers}, &stringList{vals: allTests})
	fs.SetOutput(w)
	fmt.Fprint(w, usageText)
	fs.PrintDefaults()
}

// parseArgs reads the command line; getenv looks up FLOODGATE_REDIS_URL
// and REDIS_URL. Every error is a usage error (usagef) naming the problem.
func parseArgs(args []string, getenv func(string) string) (options, error) {
	o := options{args: args}
	users := intList{vals: defaultUsers}
	tests := stringList{vals: allTests}
	fs := newFlagSet(&o, &users, &tests)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			o.help = true
			return o, nil
		}
		return o, usagef("%v", err)
	}
	if o.help {
		return o, nil
	}
	if fs.NArg() > 0 {
		return o, usagef("unexpected argument %q: every setting is a flag", fs.Arg(0))
	}
	o.users = slices.Clone(users.vals)
	// Tests run in the study's order whatever order they were given in.
	for _, t := range allTests {
		if slices.Contains(tests.vals, t) {
			o.tests = append(o.tests, t)
		}
	}
	switch {
	case o.idle < minIdle || o.idle > maxIdle:
		return o, usagef("-idle %v: must be between %v and %v", o.idle, minIdle, maxIdle)
	case o.goroutines < 1 || o.goroutines > maxGoroutines:
		return o, usagef("-goroutines %d: must be between 1 and %d", o.goroutines, maxGoroutines)
	case o.lookups < 1 || o.lookups > maxLookups:
		return o, usagef("-lookups %d: must be between 1 and %d", o.lookups, maxLookups)
	case o.duration < minDuration || o.duration > maxDuration:
		return o, usagef("-duration %v: must be between %v and %v", o.duration, minDuration, maxDuration)
	case o.cluster != 0 && (o.cluster < 3 || o.cluster > maxCluster):
		return o, usagef("-cluster %d: a Redis Cluster needs 3 to %d masters here", o.cluster, maxCluster)
	case o.replicas < 0 || o.replicas > 2:
		return o, usagef("-replicas %d: must be between 0 and 2", o.replicas)
	case o.replicas > 0 && o.cluster == 0:
		return o, usagef("-replicas %d: only with -cluster", o.replicas)
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "prefix":
			o.prefixSet = true
		case "redis-url":
			o.urlFrom = "--redis-url"
		}
	})
	if o.prefixSet {
		if err := checkPrefix(o.prefix); err != nil {
			return o, usagef("-prefix %q: %v", o.prefix, err)
		}
	} else {
		o.prefix = randomPrefix()
	}
	if o.urlFrom == "" {
		for _, name := range []string{"FLOODGATE_REDIS_URL", "REDIS_URL"} {
			if v := strings.TrimSpace(getenv(name)); v != "" {
				o.redisURL, o.urlFrom = v, name
				break
			}
		}
	} else if strings.TrimSpace(o.redisURL) == "" {
		return o, usagef("-redis-url is empty")
	}
	if o.cluster > 0 && o.urlFrom == "--redis-url" {
		return o, usagef("-cluster starts its own Cluster: drop -redis-url")
	}
	if o.cluster > 0 {
		o.redisURL, o.urlFrom = "", "" // the environment's Redis is not the one measured
	}
	return o, nil
}

// checkPrefix keeps the prefix usable as a SCAN MATCH pattern as is (no
// glob characters to escape) and as a limiter KeyPrefix (no braces).
func checkPrefix(p string) error {
	if p == "" {
		return errors.New("empty: loadgen deletes every key under its prefix")
	}
	if len(p) > maxPrefixLen {
		return fmt.Errorf("%d bytes, at most %d", len(p), maxPrefixLen)
	}
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":_.-", r)
		if !ok {
			return fmt.Errorf("character %q not allowed: use letters, digits and \":_.-\"", r)
		}
	}
	return nil
}

// randomPrefix is "fgl:" and five hex digits and ":", 10 bytes like the
// production "floodgate:", so keys cost what they will in production.
func randomPrefix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "fgl:" + hex.EncodeToString(b[:])[:5] + ":"
}
