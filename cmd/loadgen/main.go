// Command loadgen is the RAM benchmark of benchmark-cooldowns-ram.md done
// on real Redis: for 100, 1,000, 10,000 and 50,000 users it runs three
// tests (simple cooldowns, hourly tracking, the full limiter), writing each
// user's state through the library, and measures Redis memory per user,
// decision latency and rate beside PING, server time per decision and
// cleanup; it checks the study's acceptance table and answers its question
// in words. --cluster N runs the same across an N-master Redis Cluster and
// reports each shard. `loadgen -help` says how each figure is taken.
//
// A FAIL is a finding, not an error: the exit status is 0. Bad flags or an
// unreachable Redis exit 2, other errors 1, Ctrl-C 130; in every case
// loadgen first deletes its keys and stops the servers it started.
//
// Usage:
//
//	go run ./cmd/loadgen                              # the four sizes, embedded redis-server
//	go run ./cmd/loadgen --users 50000 --json out.json --svg mem.svg
//	go run ./cmd/loadgen --cluster 3 --users 1M --tests hourly
//	REDIS_URL=redis://host:6379 go run ./cmd/loadgen  # your Redis: only keys under its prefix
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/limiter"
)

func main() { cli.Main("loadgen", Run) }

// bench is one run's shared state.
type bench struct {
	o        options
	t        *target
	memory   bool // the server reports used_memory and expired_keys
	progress *progress
	shards   *shardMap
	keyer    *limiter.Limiter // names keys: Limiter.UserKeys
	log      logger
}

// timed: the server is a real Redis, whose latency means something.
func (b *bench) timed() bool { return b.t.mode != modeMiniredis }

// Run is loadgen: it parses args, measures, prints the report on stdout
// and writes --json, --markdown and --svg. Progress and warnings go to
// stderr. Whatever happens, it removes its keys and stops its server
// before it returns.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseArgs(args, os.Getenv)
	if err != nil {
		return err
	}
	if o.help {
		writeUsage(stdout)
		return nil
	}
	if err := checkOutputDirs(o); err != nil {
		return err
	}
	began := time.Now()
	log := logger{w: stderr, quiet: o.quiet}
	t, err := openTarget(ctx, o, log.warnf)
	if err != nil {
		return err
	}
	defer t.close()
	if err := claimPrefix(ctx, t, &o); err != nil {
		return interrupted(ctx, err)
	}
	// From here on the prefix is ours: delete everything under it on the
	// way out, Ctrl-C included.
	defer deleteKeys(ctx, t, o.prefix, log, &err)
	b, si, err := newBench(ctx, o, t, log)
	if err != nil {
		return interrupted(ctx, err)
	}
	rep := &Report{Tool: "floodgate loadgen", Environment: environment(o, t, si, b.memory, began)}
	if err := b.warmUpServer(ctx); err != nil {
		return interrupted(ctx, err)
	}
	if rep.Scenarios, err = b.runScenarios(ctx); err != nil {
		return interrupted(ctx, err)
	}
	rep.WallSeconds = time.Since(began).Seconds()
	return writeReports(rep, o, stdout)
}

// checkOutputDirs refuses a report file in a directory that does not
// exist before anything is measured.
func checkOutputDirs(o options) error {
	for _, f := range []struct{ flag, path string }{{"-json", o.jsonFile}, {"-markdown", o.mdFile}, {"-svg", o.svgFile}} {
		if f.path == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Dir(f.path)); err != nil || !fi.IsDir() {
			return usagef("%s %s: no such directory %s", f.flag, f.path, filepath.Dir(f.path))
		}
	}
	return nil
}

// logger writes loadgen's lines on stderr: warnings always, status lines
// unless --quiet.
type logger struct {
	w     io.Writer
	quiet bool
}

func (l logger) warnf(format string, a ...any) { fmt.Fprintf(l.w, "loadgen: "+format+"\n", a...) }

func (l logger) logf(format string, a ...any) {
	if !l.quiet {
		l.warnf(format, a...)
	}
}

// deleteKeys deletes everything under the prefix, on a fresh context as
// ctx is cancelled after Ctrl-C; its error becomes *err unless one is
// there already. Servers loadgen started are stopped instead, faster.
func deleteKeys(ctx context.Context, t *target, prefix string, log logger, err *error) {
	if t.owned() {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	n, _, perr := t.purge(cctx, prefix)
	if perr == nil && n > 0 {
		// Keys were left, so the run was cut short: writes sent before
		// Ctrl-C may reach Redis after that purge. Once Redis has dropped
		// the workers' connections, purge again.
		perr = t.with(cctx, func(c redis.UniversalClient) error { return t.quiesce(cctx, c) })
		if perr == nil {
			_, _, perr = t.purge(cctx, prefix)
		}
	}
	if perr != nil {
		if *err == nil {
			*err = perr
		} else {
			log.warnf("could not delete every key under %q: %v", prefix, perr)
		}
	}
}

// newBench looks at the server (version, whether it reports memory, its
// shards) and warns about what the figures will lack.
func newBench(ctx context.Context, o options, t *target, log logger) (*bench, serverInfo, error) {
	b := &bench{o: o, t: t, progress: newProgress(log.w, o.quiet), log: log}
	var err error
	if b.keyer, err = newKeyer(o.prefix); err != nil {
		return nil, serverInfo{}, err
	}
	if t.mode == modeMiniredis {
		log.warnf("%s", notMeasured)
	}
	si, err := t.describe(ctx)
	if err != nil {
		return nil, si, err
	}
	if _, b.memory, err = t.usedMemory(ctx); err != nil {
		return nil, si, err
	}
	if t.mode == modeURL {
		log.warnf("measuring %s: only keys under %q are written and deleted, but other clients' traffic changes used_memory too and blurs the figures", t.desc, o.prefix)
	}
	if err := t.with(ctx, func(c redis.UniversalClient) error {
		b.shards, err = loadShardMap(ctx, c)
		return err
	}); err != nil {
		return nil, si, err
	}
	if o.svgFile != "" && !b.memory {
		return nil, si, usagef("-svg %s: %s reports no memory, so there is nothing to draw", o.svgFile, t.desc)
	}
	if !b.memory && t.mode != modeMiniredis {
		log.warnf("%s reports no INFO memory: memory and expiry figures are n/a", t.desc)
	}
	// A Redis that evicts Floodgate's keys forgets limits: say so first.
	_ = t.with(ctx, func(c redis.UniversalClient) error {
		if e, err := limiter.CheckEviction(ctx, c); err == nil && e.Unsafe {
			log.warnf("WARNING: %s", e.Warning())
		}
		return nil
	})
	log.logf("%s, Redis %s; keys under %q", t.desc, si.Version, o.prefix)
	return b, si, nil
}

// runScenarios runs every test at every number of users, in order.
func (b *bench) runScenarios(ctx context.Context) ([]ScenarioResult, error) {
	var out []ScenarioResult
	for _, users := range b.o.users {
		sc := ScenarioResult{Users: users, Label: scenarioLabel(users)}
		for _, test := range b.o.tests {
			res, err := b.runTest(ctx, users, test)
			if err != nil {
				return nil, err
			}
			b.log.logf("%s", statusLine(res))
			sc.Tests = append(sc.Tests, res)
		}
		out = append(out, sc)
	}
	return out, nil
}

// writeReports prints the report and writes each file asked for.
func writeReports(rep *Report, o options, stdout io.Writer) error {
	if err := rep.writeText(stdout, o.detail); err != nil {
		return fmt.Errorf("loadgen: writing the report: %w", err)
	}
	for _, f := range []struct {
		path  string
		write func(io.Writer) error
	}{{o.jsonFile, rep.writeJSON}, {o.mdFile, rep.writeMarkdown}, {o.svgFile, rep.writeSVG}} {
		if f.path == "" {
			continue
		}
		if err := writeFile(f.path, f.write); err != nil {
			return err
		}
	}
	return nil
}

// claimPrefix makes sure no key lives under the prefix before loadgen
// starts deleting under it: a random prefix is drawn again, a chosen one
// is refused.
func claimPrefix(ctx context.Context, t *target, o *options) error {
	for try := 0; ; try++ {
		keys, err := t.countKeysByNode(ctx, o.prefix)
		if err != nil {
			return err
		}
		n := sum(keys)
		if n == 0 {
			t.prefix = o.prefix
			return nil
		}
		if o.prefixSet {
			return usagef("-prefix %q: %d keys already exist under it, and loadgen deletes everything under its prefix; choose another", o.prefix, n)
		}
		if try == 5 {
			return fmt.Errorf("loadgen: could not find an unused key prefix (last tried %q)", o.prefix)
		}
		o.prefix = randomPrefix()
	}
}

// interrupted turns the errors a cancelled run produces into one clear
// error that still matches context.Canceled.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("loadgen: interrupted, keys and server cleaned up: %w", context.Canceled)
	}
	return err
}

func environment(o options, t *target, si serverInfo, memory bool, began time.Time) Environment {
	return Environment{
		Target:            t.desc,
		Mode:              t.mode,
		Server:            si,
		MemoryMeasured:    memory,
		GoVersion:         runtime.Version(),
		GOOS:              runtime.GOOS,
		GOARCH:            runtime.GOARCH,
		CPUs:              runtime.NumCPU(),
		GOMAXPROCS:        runtime.GOMAXPROCS(0),
		CommandLine:       commandLine(o.args),
		Users:             o.users,
		Tests:             o.tests,
		Seed:              o.seed,
		IdleSeconds:       o.idle.Seconds(),
		Goroutines:        o.goroutines,
		Lookups:           o.lookups,
		ThroughputSeconds: o.duration.Seconds(),
		PopulateWorkers:   populateWorkers,
		Prefix:            o.prefix,
		StartedAt:         began.UTC().Truncate(time.Second),
	}
}

// commandLine is how to run the same measurement again, with anything
// that could hold a password redacted.
func commandLine(args []string) string {
	parts := []string{"go run ./cmd/loadgen"}
	redactNext := false
	for _, a := range args {
		switch {
		case redactNext:
			a, redactNext = limiter.RedactURL(a), false
		case a == "-redis-url" || a == "--redis-url":
			redactNext = true
		case strings.HasPrefix(a, "-redis-url=") || strings.HasPrefix(a, "--redis-url="):
			k, v, _ := strings.Cut(a, "=")
			a = k + "=" + limiter.RedactURL(v)
		}
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes a word only when the shell would need it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,:/@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func statusLine(r TestResult) string {
	s := fmt.Sprintf("%s users, %s: written in %.1f s", fmtCount(r.Users), r.Test, r.PopulateSeconds)
	if r.Memory != nil {
		s += fmt.Sprintf(", %.0f B/user", r.Memory.BytesPerUser)
	}
	s += fmt.Sprintf(", p50 %s, purge %s", fmtUs(r.Latency.P50us), fmtMs(r.Purge.Ms))
	if e := r.Expiry; e != nil {
		s += ", expiry " + msPtr(e.KeysReclaimedMs, "timed out")
	}
	return s + fmt.Sprintf(" (%.1f s)", r.Seconds)
}

// writeFile writes a report form to path.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("loadgen: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("loadgen: writing %s: %w", path, err)
	}
	return nil
}
