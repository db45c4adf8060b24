package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is everything one run measured; --json writes it as is. Sizes are
// bytes, times carry their unit in the field name.
type Report struct {
	Tool        string           `json:"tool"`
	Environment Environment      `json:"environment"`
	Scenarios   []ScenarioResult `json:"scenarios"`
	Notes       []string         `json:"notes"`
	WallSeconds float64          `json:"wall_seconds"`
}

// Environment says where and how the figures were taken.
type Environment struct {
	Target            string     `json:"target"`
	Mode              string     `json:"mode"` // embedded, url or miniredis
	Server            serverInfo `json:"server"`
	MemoryMeasured    bool       `json:"memory_measured"`
	GoVersion         string     `json:"go_version"`
	GOOS              string     `json:"goos"`
	GOARCH            string     `json:"goarch"`
	CPUs              int        `json:"cpus"`
	GOMAXPROCS        int        `json:"gomaxprocs"`
	CommandLine       string     `json:"command_line"`
	Users             []int      `json:"users"`
	Tests             []string   `json:"tests"`
	Seed              uint64     `json:"seed"`
	IdleSeconds       float64    `json:"idle_seconds"`
	Goroutines        int        `json:"goroutines"`
	Lookups           int        `json:"lookups"`
	ThroughputSeconds float64    `json:"throughput_seconds"`
	PopulateWorkers   int        `json:"populate_workers"`
	Prefix            string     `json:"prefix"`
	StartedAt         time.Time  `json:"started_at"`
}

// ScenarioResult is one number of users.
type ScenarioResult struct {
	Users int          `json:"users"`
	Label string       `json:"label,omitempty"` // the study's name for it
	Tests []TestResult `json:"tests"`
}

// TestResult is one of the study's tests at one size.
type TestResult struct {
	Test              string           `json:"test"`
	Users             int              `json:"users"`
	Config            string           `json:"config"`
	WrittenWith       string           `json:"written_with"`
	PopulateSeconds   float64          `json:"populate_seconds"`
	PopulatePerSecond float64          `json:"populate_per_second"`
	Keys              int64            `json:"keys"` // under the prefix after writing: users + shared state
	Shared            SharedState      `json:"shared_state"`
	Memory            *MemoryResult    `json:"memory"` // null: the server reports no used_memory
	Latency           LatencyResult    `json:"latency"`
	Throughput        ThroughputResult `json:"throughput"`
	Purge             PurgeResult      `json:"purge"`
	Expiry            *ExpiryResult    `json:"expiry"` // null: not measured (no INFO)
	Acceptance        AcceptanceResult `json:"acceptance"`
	// Path is what the timed lookups decide (see lookupPath).
	Path string `json:"path"`
	// Server is what the decisions of the N-goroutine phase cost inside
	// Redis, all masters together; Shards is each master's share.
	Server ServerTime    `json:"server_time"`
	Shards []ShardResult `json:"shards"`
	// HotKeys: the full test's shared keys, each driven alone.
	HotKeys []HotKeyResult `json:"hot_keys,omitempty"`
	Spread  float64        `json:"spread"` // max/min keys per shard
	Seconds float64        `json:"seconds"`
	// PhaseSeconds is the wall time of each phase: warm-up, write,
	// memory, decisions, purge, expiry.
	PhaseSeconds map[string]float64 `json:"phase_seconds"`
}

// SharedState is the full test's endpoint, API and slot state.
type SharedState struct {
	Keys    int    `json:"keys"`
	Written string `json:"written,omitempty"`
}

// MemoryResult compares INFO used_memory before and after writing the
// users, and MEMORY USAGE of a sample of their keys.
type MemoryResult struct {
	BaselineBytes           int64   `json:"baseline_bytes"`
	AfterBytes              int64   `json:"after_bytes"`
	DeltaBytes              int64   `json:"delta_bytes"`
	BytesPerUser            float64 `json:"bytes_per_user"`
	SampleKeys              int     `json:"memory_usage_sample_keys"`
	MemoryUsagePerUser      float64 `json:"memory_usage_bytes_per_user"`
	NotInMemoryUsagePerUser float64 `json:"not_in_memory_usage_bytes_per_user"`
	Encoding                string  `json:"encoding"`
	StudyEstimateBytes      int64   `json:"study_estimate_bytes"`
	// Replicas (--replicas): growth of used_memory summed over every
	// replica, and per user per copy.
	ReplicaDeltaBytes   int64   `json:"replica_delta_bytes,omitempty"`
	ReplicaBytesPerUser float64 `json:"replica_bytes_per_user,omitempty"`

	after map[string]int64 // used_memory by master
}

// LatencyResult is the timed lookups, one after another.
type LatencyResult struct {
	Lookups         int     `json:"lookups"`
	P50us           float64 `json:"p50_us"`
	P99us           float64 `json:"p99_us"`
	P999us          float64 `json:"p999_us"`
	MeanUs          float64 `json:"mean_us"`
	AllowedFraction float64 `json:"allowed_fraction"`
	PerSecond       float64 `json:"per_second"`
	// The same lookups again with the local deny cache on.
	CacheSize      int     `json:"deny_cache_size"`
	CachedP50us    float64 `json:"cached_p50_us"`
	CachedP99us    float64 `json:"cached_p99_us"`
	CachedFraction float64 `json:"cached_fraction"`
}

// ThroughputResult is decisions against PING round trips, same run. The
// 1-goroutine rates are 1/p50 of interleaved calls; the N-goroutine ones
// and RatioN are medians over alternating slices.
type ThroughputResult struct {
	Goroutines       int     `json:"goroutines"`
	Decisions1PerSec float64 `json:"decisions_per_second_1"`
	Ping1PerSec      float64 `json:"ping_per_second_1"`
	Ratio1           float64 `json:"ratio_1"`
	DecisionsNPerSec float64 `json:"decisions_per_second_n"`
	PingNPerSec      float64 `json:"ping_per_second_n"`
	RatioN           float64 `json:"ratio_n"`
	PingP50us        float64 `json:"ping_p50_us"`
	PingSamples      int     `json:"ping_samples"`
}

// PurgeResult is the explicit cleanup: SCAN MATCH prefix* + UNLINK.
type PurgeResult struct {
	Ms                       float64 `json:"ms"`
	Keys                     int64   `json:"keys"`
	KeysPerSecond            float64 `json:"keys_per_second"`
	MemoryAboveBaselineBytes *int64  `json:"memory_above_baseline_bytes"`
}

// ExpiryResult is the idle cleanup: keys written with TTLs of at most
// IdleSeconds, then timed from the moment the last one was due.
type ExpiryResult struct {
	Config                   string   `json:"config"`
	IdleSeconds              float64  `json:"idle_seconds"`
	Keys                     int64    `json:"keys"`
	WriteSeconds             float64  `json:"write_seconds"`
	PeakAboveBaselineBytes   int64    `json:"peak_above_baseline_bytes"`
	ExpiredKeys              int64    `json:"expired_keys"`
	KeysReclaimedMs          *float64 `json:"keys_reclaimed_ms"`   // null: not all within the timeout
	MemoryReclaimedMs        *float64 `json:"memory_reclaimed_ms"` // null: not within the timeout
	ToleranceBytes           int64    `json:"tolerance_bytes"`
	MemoryAboveBaselineBytes int64    `json:"memory_above_baseline_bytes"`
	TimedOut                 bool     `json:"timed_out"`
	KeysLeft                 int64    `json:"keys_left"`
}

// Check is one cell of the study's acceptance table.
type Check struct {
	Status   string  `json:"status"` // PASS, FAIL or n/a
	Measured float64 `json:"measured"`
	Limit    float64 `json:"limit"`
	Unit     string  `json:"unit"` // bytes, ms, us
}

// AcceptanceResult is the study's acceptance row for a test.
type AcceptanceResult struct {
	StudyUsers int   `json:"study_users"` // the row used; 0: beyond the study's table
	RAM        Check `json:"ram"`
	Cleanup    Check `json:"cleanup"`
	Lookup     Check `json:"lookup"`
}

func check(measured, limit float64, unit string) Check {
	st := "PASS"
	if measured >= limit {
		st = "FAIL"
	}
	return Check{Status: st, Measured: measured, Limit: limit, Unit: unit}
}

// accept fills the study's acceptance row: RAM is the whole used_memory
// growth, cleanup the explicit purge, lookup the p50 decision latency.
func accept(users int, r TestResult) AcceptanceResult {
	row, ok := acceptanceRowFor(users)
	na := Check{Status: "n/a"}
	if !ok {
		return AcceptanceResult{RAM: na, Cleanup: na, Lookup: na}
	}
	a := AcceptanceResult{StudyUsers: row.users, RAM: na}
	if r.Memory != nil {
		a.RAM = check(float64(r.Memory.DeltaBytes), float64(row.ram), "bytes")
	}
	a.Cleanup = check(r.Purge.Ms, ms(row.cleanup), "ms")
	a.Lookup = check(r.Latency.P50us, us(row.lookup), "us")
	return a
}

// unit is one step of a printed quantity: values from min up print as
// format applied to the value divided by div.
type unit struct {
	min, div float64
	format   string
}

// Units from the largest down; the last serves every value below the rest.
var (
	// Decimal, as the study does (7.6 KB = 7,600 B).
	byteUnits = []unit{{1e9, 1e9, "%.2f GB"}, {1e6, 1e6, "%.2f MB"}, {1e3, 1e3, "%.1f kB"}, {0, 1, "%.0f B"}}
	usUnits   = []unit{{1e6, 1e6, "%.2f s"}, {1e3, 1e3, "%.2f ms"}, {10, 1, "%.0f µs"}, {0, 1, "%.1f µs"}}
	rateUnits = []unit{{1e6, 1e6, "%.2fM/s"}, {1e3, 1e3, "%.1fk/s"}, {0, 1, "%.0f/s"}}
)

// fmtUnits prints v in the first of units whose min it reaches, else in
// the last.
func fmtUnits(v float64, units []unit) string {
	u := units[len(units)-1]
	for _, c := range units {
		if v >= c.min {
			u = c
			break
		}
	}
	return fmt.Sprintf(u.format, v/u.div)
}

// fmtBytes prints bytes: "7.6 kB", "-409.1 kB".
func fmtBytes(b float64) string {
	if b < 0 {
		return "-" + fmtUnits(-b, byteUnits)
	}
	return fmtUnits(b, byteUnits)
}

// fmtUs prints microseconds with a readable unit.
func fmtUs(v float64) string { return fmtUnits(v, usUnits) }

func fmtMs(v float64) string { return fmtUs(v * 1e3) }

// fmtRate prints calls per second: "15.2k/s".
func fmtRate(v float64) string { return fmtUnits(v, rateUnits) }

// fmtCount prints 50000 as "50,000".
func fmtCount(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + fmtCount(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// table is one block of the report, rendered as text or Markdown.
type table struct {
	title  string
	header []string
	rows   [][]string
}

// lastTests is every test result, or with last only the last one run.
func (r *Report) lastTests(last bool) []TestResult {
	xs := r.tests()
	if last && len(xs) > 0 {
		return xs[len(xs)-1:]
	}
	return xs
}

// tests lists every test result in run order.
func (r *Report) tests() []TestResult {
	var out []TestResult
	for _, sc := range r.Scenarios {
		out = append(out, sc.Tests...)
	}
	return out
}

// timed: the run measured latency (not the in-process fallback).
func (r *Report) timed() bool { return r.Environment.Mode != modeMiniredis }

// summary is the default table: one row per users x test.
func (r *Report) summary() table {
	if !r.timed() {
		t := table{title: "What each user leaves in the store",
			header: []string{"users", "test", "keys", "keys/user", "written with"}}
		for _, x := range r.tests() {
			t.rows = append(t.rows, []string{fmtCount(x.Users), x.Test, fmtCount(int(x.Keys)),
				fmt.Sprintf("%.2f", float64(x.Keys)/float64(max(x.Users, 1))), strings.Fields(x.WrittenWith)[0]})
		}
		return t
	}
	t := table{title: fmt.Sprintf("Per user: Redis memory, decision p50, rate at %d goroutines, purge time; study's limits",
		r.Environment.Goroutines),
		header: []string{"users", "test", "B/user", "total", "p50", "x PING", "purge", "RAM", "cleanup", "lookup"}}
	for _, x := range r.tests() {
		per, total := "n/a", "n/a"
		if m := x.Memory; m != nil {
			per, total = fmt.Sprintf("%.0f B", m.BytesPerUser), fmtBytes(float64(m.DeltaBytes))
		}
		a := x.Acceptance
		t.rows = append(t.rows, []string{fmtCount(x.Users), x.Test, per, total, fmtUs(x.Latency.P50us),
			fmt.Sprintf("%.2f", x.Throughput.RatioN), fmtMs(x.Purge.Ms), a.RAM.Status, a.Cleanup.Status, a.Lookup.Status})
	}
	return t
}

// shardTable is each master's share of each test.
// With last, only the last test run (the largest size, the fullest
// policy), for the default output's one screen.
func (r *Report) shardTable(last bool) table {
	t := table{title: "Per shard (server time of the decisions at N goroutines: INFO commandstats, INFO cpu)",
		header: []string{"users", "test", "node", "keys", "used_memory", "B/user", "script µs", "CPU µs", "ceiling"}}
	for _, x := range r.lastTests(last) {
		for _, s := range x.Shards {
			mem, per := "n/a", "n/a"
			if x.Memory != nil {
				mem, per = fmtBytes(float64(s.DeltaBytes)), fmt.Sprintf("%.0f B", s.BytesPerUser)
			}
			t.rows = append(t.rows, []string{fmtCount(x.Users), x.Test, s.Node, fmtCount(int(s.Keys)), mem, per,
				fmtFloat(s.ScriptUsPerDecision), fmtFloat(s.CPUUsPerDecision), fmtRate(s.CeilingPerSec)})
		}
	}
	return t
}

// detail is every other figure, one table per concern.
func (r *Report) detail() []table {
	mem := table{title: "Memory (used_memory growth; MEMORY USAGE of a sample; the study's estimate)",
		header: []string{"users", "test", "keys", "used_memory", "B/user", "MEMORY USAGE", "not in it", "encoding", "study"}}
	lat := table{title: "Decision latency, one call at a time (deny cache off, then on)",
		header: []string{"users", "test", "allowed", "p50", "p99", "p99.9", "cache: p50", "p99", "cached"}}
	thr := table{title: "Decisions per second beside PING in the same run",
		header: []string{"users", "test", "PING p50", "1 goroutine", "x PING", "N goroutines", "PING", "x PING"}}
	spd := table{title: "Speed per path (what the lookups decide; server time per decision at N goroutines)",
		header: []string{"users", "path", "p50/PING", "x PING", "script µs", "CPU µs", "ceiling/s"}}
	clean := table{title: "Cleanup: explicit purge, then idle expiry (TTLs of --idle) timed by Redis",
		header: []string{"users", "test", "purge", "keys", "after purge", "expired", "all gone", "memory back"}}
	for _, x := range r.tests() {
		u := fmtCount(x.Users)
		if m := x.Memory; m != nil {
			mu, notIn := "n/a", "n/a"
			if m.SampleKeys > 0 {
				mu, notIn = fmt.Sprintf("%.0f B", m.MemoryUsagePerUser), fmt.Sprintf("%+.0f B", m.NotInMemoryUsagePerUser)
			}
			mem.rows = append(mem.rows, []string{u, x.Test, fmtCount(int(x.Keys)), fmtBytes(float64(m.DeltaBytes)),
				fmt.Sprintf("%.0f B", m.BytesPerUser), mu, notIn, orNA(m.Encoding), fmtBytes(float64(m.StudyEstimateBytes))})
		}
		if !r.timed() {
			continue
		}
		l, th := x.Latency, x.Throughput
		lat.rows = append(lat.rows, []string{u, x.Test, pct(l.AllowedFraction), fmtUs(l.P50us), fmtUs(l.P99us), fmtUs(l.P999us),
			fmtUs(l.CachedP50us), fmtUs(l.CachedP99us), pct(l.CachedFraction)})
		thr.rows = append(thr.rows, []string{u, x.Test, fmtUs(th.PingP50us), fmtRate(th.Decisions1PerSec), fmt.Sprintf("%.2f", th.Ratio1),
			fmtRate(th.DecisionsNPerSec), fmtRate(th.PingNPerSec), fmt.Sprintf("%.2f", th.RatioN)})
		p50 := "n/a"
		if th.PingP50us > 0 {
			p50 = fmt.Sprintf("%.2f", l.P50us/th.PingP50us)
		}
		spd.rows = append(spd.rows, []string{u, pathLabel(x), p50, fmt.Sprintf("%.2f", th.RatioN),
			fmtFloat(x.Server.ScriptUsPerDecision), fmtFloat(x.Server.CPUUsPerDecision), fmtRate(x.Server.CeilingPerSec)})
		after, ek, gone, back := "n/a", "n/a", "n/a", "n/a"
		if p := x.Purge.MemoryAboveBaselineBytes; p != nil {
			after = fmtSignedBytes(*p)
		}
		if e := x.Expiry; e != nil {
			ek = fmtCount(int(e.ExpiredKeys))
			gone = msPtr(e.KeysReclaimedMs, "timed out")
			back = msPtr(e.MemoryReclaimedMs, fmt.Sprintf("no: %s over", fmtBytes(float64(e.MemoryAboveBaselineBytes))))
		}
		clean.rows = append(clean.rows, []string{u, x.Test, fmtMs(x.Purge.Ms), fmtCount(int(x.Purge.Keys)), after, ek, gone, back})
	}
	if g := r.Environment.Goroutines; g > 0 {
		thr.header[5] = fmt.Sprintf("%d goroutines", g)
	}
	var out []table
	hot := table{title: "Hot keys: shared state, one key so one shard each (full test, N goroutines)",
		header: []string{"users", "operation", "calls/s", "script µs", "CPU µs", "ceiling/s"}}
	for _, x := range r.tests() {
		for _, h := range x.HotKeys {
			hot.rows = append(hot.rows, []string{fmtCount(x.Users), h.Op, fmtRate(h.PerSecond),
				fmtFloat(h.ScriptUsPerDecision), fmtFloat(h.CPUUsPerDecision), fmtRate(h.CeilingPerSec)})
		}
	}
	for _, t := range []table{mem, lat, thr, spd, clean, hot, r.shardTable(false)} {
		if len(t.rows) > 0 && (r.timed() || t.title == mem.title) {
			out = append(out, t)
		}
	}
	return out
}

// lookupPath says which decision path a test's lookups measure: every
// lookup is on an existing user, and the users' state decides the path.
func lookupPath(test string) string {
	switch test {
	case testCooldown:
		return "denied by the cooldown (1 h cooldown, no window)"
	case testHourly:
		return "denied by the window (20 of 20 entries, no cooldown)"
	}
	return "allowed on windows of 5-19 entries, else denied (full window, or cooldown on a repeat)"
}

// pathLabel is the short form of a test's path for the speed table.
func pathLabel(x TestResult) string {
	switch x.Test {
	case testCooldown:
		return "cooldown denial"
	case testHourly:
		return "window denial, 20 of 20"
	}
	return fmt.Sprintf("allow, 5-19 entries (%s)", pct(x.Latency.AllowedFraction))
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

// fmtFloat prints a small measured quantity with 2 significant decimals.
func fmtFloat(v float64) string {
	if v <= 0 {
		return "n/a"
	}
	if v >= 10 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func fmtSignedBytes(b int64) string {
	if b >= 0 {
		return "+" + fmtBytes(float64(b))
	}
	return fmtBytes(float64(b))
}

func msPtr(v *float64, none string) string {
	if v == nil {
		return none
	}
	return fmtMs(*v)
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

// verdict answers the study's question in words: "is RAM under 10 MB for
// 10K users? then implement per-user cooldowns", and says what failed.
func (r *Report) verdict() []string {
	if !r.Environment.MemoryMeasured {
		return []string{"No verdict: the study's question is about Redis memory, which this run could not read."}
	}
	// The full limiter at 10,000 users if measured; else the test and size
	// closest to it, scaled linearly (memory per user is flat).
	var best *TestResult
	score := func(x *TestResult) int {
		s := 0
		if x.Test == testFull {
			s += 2
		}
		if x.Users == questionUsers {
			s += 4
		}
		return s
	}
	xs := r.tests()
	for i := range xs {
		if xs[i].Memory != nil && (best == nil || score(&xs[i]) > score(best) ||
			score(&xs[i]) == score(best) && xs[i].Users > best.Users) {
			best = &xs[i]
		}
	}
	if best == nil {
		return nil
	}
	per := best.Memory.BytesPerUser
	at10k := per * questionUsers
	how := fmt.Sprintf("%s at 10,000 users with the %s test (%.0f B/user)", fmtBytes(at10k), best.Test, per)
	if best.Users != questionUsers {
		how = fmt.Sprintf("%s at 10,000 users (%.0f B/user, measured with the %s test at %s users)",
			fmtBytes(at10k), per, best.Test, fmtCount(best.Users))
	}
	var out []string
	switch {
	case at10k < questionBytes:
		out = append(out, "Yes: RAM is under 10 MB for 10K users, "+how+". Implement per-user cooldowns.")
	case at10k <= alarmBytes:
		out = append(out, "No: RAM is over the study's 10 MB for 10K users, "+how+"; under its 50 MB alarm.")
	default:
		out = append(out, "No: "+how+", over the study's 50 MB alarm: optimise the structures first.")
	}
	// What failed, by criterion, and why in one clause.
	fails := map[string][]string{}
	for _, x := range xs {
		for name, c := range map[string]Check{"RAM": x.Acceptance.RAM, "cleanup": x.Acceptance.Cleanup, "lookup": x.Acceptance.Lookup} {
			if c.Status == "FAIL" && !slices.Contains(fails[name], fmtCount(x.Users)) {
				fails[name] = append(fails[name], fmtCount(x.Users))
			}
		}
	}
	if len(fails) == 0 {
		return append(out, "Every measured row passes the study's acceptance table.")
	}
	for _, name := range []string{"RAM", "cleanup", "lookup"} {
		if u := fails[name]; len(u) > 0 {
			s := fmt.Sprintf("%s fails at %s users", strings.ToUpper(name[:1])+name[1:], joinAnd(u))
			if name == "lookup" {
				s += fmt.Sprintf(": the study timed in-process dict lookups; a Redis decision is a network round trip"+
					" (PING p50 here: %s). Repeat denials from the deny cache: %s (--detail).", fmtUs(pingP50(xs)), fmtUs(cachedP50(xs)))
			} else {
				s += "."
			}
			out = append(out, s)
		}
	}
	return out
}

// joinAnd lists words as "a, b and c".
func joinAnd(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// pingP50 is the median PING p50 over the tests.
func pingP50(xs []TestResult) float64 {
	var v []float64
	for _, x := range xs {
		v = append(v, x.Throughput.PingP50us)
	}
	return median(v)
}

// cachedP50 is the best deny-cache p50 among tests where the cache
// answered most lookups (0 if none).
func cachedP50(xs []TestResult) float64 {
	best := 0.0
	for _, x := range xs {
		if l := x.Latency; l.CachedFraction >= 0.5 && (best == 0 || l.CachedP50us < best) {
			best = l.CachedP50us
		}
	}
	return best
}

// headerLines say where and how the figures were taken.
func (r *Report) headerLines() []string {
	e := r.Environment
	s := e.Server
	lines := []string{
		fmt.Sprintf("Redis: %s", e.Target),
		fmt.Sprintf("  version %s (%s, %d master(s)), %s, zset-max-listpack-entries %s, -value %s",
			s.Version, s.Mode, s.Masters, s.Allocator, s.ZsetListpackEntries, s.ZsetListpackValue),
		fmt.Sprintf("Client: %s %s/%s, %d CPUs; seed %d, idle %v, %d goroutines, %d lookups, prefix %q",
			e.GoVersion, e.GOOS, e.GOARCH, e.CPUs, e.Seed, time.Duration(e.IdleSeconds*float64(time.Second)), e.Goroutines, e.Lookups, e.Prefix),
		"Command: " + e.CommandLine,
	}
	for _, x := range r.tests() {
		if x.Test == testFull && x.Shared.Written != "" {
			return append(lines, "Full test: users plus "+x.Shared.Written+".")
		}
	}
	return lines
}

// notMeasured is the first line of a run on the in-process fallback.
const notMeasured = "Not measured (no redis-server): Redis memory, latency, expiry. Fix: " + installHint

// title is the report's first line.
func (r *Report) title() string {
	e := r.Environment
	if !r.timed() {
		return notMeasured
	}
	return fmt.Sprintf("Floodgate loadgen on %s (Redis %s)", shortTarget(e), e.Server.Version)
}

func shortTarget(e Environment) string {
	switch e.Mode {
	case modeEmbedded:
		return "a throwaway redis-server"
	case modeCluster:
		return fmt.Sprintf("a throwaway %d-master Redis Cluster", e.Server.Masters)
	}
	return e.Target
}

// writeText renders the report for a terminal: the summary, the verdict
// and, on a Cluster, the shards; everything with --detail.
func (r *Report) writeText(w io.Writer, detail bool) error {
	var b strings.Builder
	b.WriteString(r.title() + "\n")
	for _, n := range r.Notes {
		b.WriteString("NOTE: " + n + "\n")
	}
	if detail {
		for _, l := range r.headerLines() {
			b.WriteString(l + "\n")
		}
	}
	sum := r.summary()
	b.WriteString("\n" + sum.title + "\n")
	writeAligned(&b, sum.header, sum.rows)
	if r.timed() {
		for _, l := range acceptanceLegend() {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("\n")
	for _, l := range r.verdict() {
		b.WriteString(wrap(l, 100))
	}
	if r.Environment.Mode == modeCluster && !detail {
		t := r.shardTable(true)
		b.WriteString("\n" + t.title + "\n")
		writeAligned(&b, t.header, t.rows)
		b.WriteString(spreadLine(r, true) + "\n")
	}
	if detail {
		for _, t := range r.detail() {
			b.WriteString("\n" + t.title + "\n")
			writeAligned(&b, t.header, t.rows)
		}
		if r.Environment.Mode == modeCluster {
			b.WriteString(spreadLine(r, false) + "\n")
		}
	}
	fmt.Fprintf(&b, "\nTotal %.1f s. --detail, --json, --markdown: every figure; --help: how each is taken.\n", r.WallSeconds)
	_, err := io.WriteString(w, b.String())
	return err
}

// spreadLine says how evenly users spread over the shards, per test.
// With last, only for the last test run. The result is wrapped at 100
// columns.
func spreadLine(r *Report, last bool) string {
	var parts, replicas []string
	for _, x := range r.lastTests(last) {
		parts = append(parts, fmt.Sprintf("%s %s %.3f", fmtCount(x.Users), x.Test, x.Spread))
		if m := x.Memory; m != nil && m.ReplicaDeltaBytes != 0 {
			replicas = append(replicas, fmt.Sprintf("%s %s +%s in all, %.0f B per user per copy",
				fmtCount(x.Users), x.Test, fmtBytes(float64(m.ReplicaDeltaBytes)), m.ReplicaBytesPerUser))
		}
	}
	s := wrap("Spread (max/min keys per shard): "+strings.Join(parts, ", "), 100)
	if len(replicas) > 0 {
		s += wrap("Replicas: "+strings.Join(replicas, "; "), 100)
	}
	return strings.TrimSuffix(s, "\n")
}

// wrap breaks s into lines of at most width runes, at spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(s) {
		n := utf8.RuneCountInString(word)
		if i > 0 && line+1+n > width {
			b.WriteString("\n")
			line = 0
		} else if i > 0 {
			b.WriteString(" ")
			line++
		}
		b.WriteString(word)
		line += n
	}
	return b.String() + "\n"
}

// writeAligned pads columns by rune count (µs is one column, two bytes).
func writeAligned(b *strings.Builder, header []string, rows [][]string) {
	widths := make([]int, len(header))
	for _, row := range append([][]string{header}, rows...) {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	line := func(row []string) {
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i == 1 { // the test name reads better left-aligned
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		b.WriteString("\n")
	}
	line(header)
	rule := make([]string, len(header))
	for i := range rule {
		rule[i] = strings.Repeat("-", widths[i])
	}
	line(rule)
	for _, row := range rows {
		line(row)
	}
}

// writeMarkdown renders every table for docs/benchmarks.md.
func (r *Report) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("<!-- generated by: " + r.Environment.CommandLine + " -->\n\n")
	for _, l := range r.headerLines() {
		b.WriteString("- " + mdEscape(strings.TrimSpace(l)) + "\n")
	}
	for _, n := range r.Notes {
		b.WriteString("- **Note:** " + mdEscape(n) + "\n")
	}
	b.WriteString("\n")
	for _, l := range r.verdict() {
		b.WriteString(mdEscape(l) + "\n\n")
	}
	tables := append([]table{r.summary()}, r.detail()...)
	for _, t := range tables {
		b.WriteString("**" + mdEscape(t.title) + "**\n\n")
		b.WriteString("| " + strings.Join(mdRow(t.header), " | ") + " |\n")
		b.WriteString("|" + strings.Repeat("---|", len(t.header)) + "\n")
		for _, row := range t.rows {
			b.WriteString("| " + strings.Join(mdRow(row), " | ") + " |\n")
		}
		b.WriteString("\n")
	}
	if r.Environment.Mode == modeCluster {
		b.WriteString(mdEscape(strings.ReplaceAll(spreadLine(r, false), "\n", " ")) + "\n\n")
	}
	fmt.Fprintf(&b, "Total wall time: %.1f s.\n", r.WallSeconds)
	_, err := io.WriteString(w, b.String())
	return err
}

func mdRow(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = mdEscape(c)
	}
	return out
}

// mdEscape keeps table cells intact: a '|' would start a new column and
// '*' or '<' could turn into emphasis or HTML.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "*", `\*`, "<", `\<`, "_", `\_`).Replace(s)
}

// writeJSON writes the report, indented. NaN and infinities (a ratio over
// zero) would make encoding/json fail, so they become 0.
func (r *Report) writeJSON(w io.Writer) error {
	for si := range r.Scenarios {
		for ti := range r.Scenarios[si].Tests {
			th := &r.Scenarios[si].Tests[ti].Throughput
			for _, f := range []*float64{&th.Ratio1, &th.RatioN} {
				if math.IsNaN(*f) || math.IsInf(*f, 0) {
					*f = 0
				}
			}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
