package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtBytes(0), "0 B"},
		{fmtBytes(117), "117 B"},
		{fmtBytes(7_600), "7.6 kB"},
		{fmtBytes(316_000), "316.0 kB"},
		{fmtBytes(5_850_000), "5.85 MB"},
		{fmtBytes(-409_100), "-409.1 kB"},
		{fmtBytes(2.5e9), "2.50 GB"},
		{fmtSignedBytes(144), "+144 B"},
		{fmtSignedBytes(-656), "-656 B"},
		{fmtUs(0.5), "0.5 µs"},
		{fmtUs(31.4), "31 µs"},
		{fmtUs(1_480), "1.48 ms"},
		{fmtUs(2_000_000), "2.00 s"},
		{fmtMs(122.05), "122.05 ms"},
		{fmtMs(0.257), "257 µs"},
		{fmtRate(950), "950/s"},
		{fmtRate(15_234), "15.2k/s"},
		{fmtRate(2_000_000), "2.00M/s"},
		{fmtCount(0), "0"},
		{fmtCount(100), "100"},
		{fmtCount(1_000), "1,000"},
		{fmtCount(50_000), "50,000"},
		{fmtCount(1_234_567), "1,234,567"},
		{fmtCount(-1_000), "-1,000"},
		{shellQuote("--users"), "--users"},
		{shellQuote("100,1000"), "100,1000"},
		{shellQuote("a b"), "'a b'"},
		{shellQuote("it's"), `'it'\''s'`},
		{shellQuote(""), "''"},
		{commandLine([]string{"--users", "100", "--redis-url", "redis://:pw@h:1"}), "go run ./cmd/loadgen --users 100 --redis-url redis://:xxxxx@h:1"},
		{commandLine([]string{"-redis-url=redis://:pw@h:1"}), "go run ./cmd/loadgen -redis-url=redis://:xxxxx@h:1"},
		{renderBar("x", 0.5, 10), "[#####.....]  50% x"},
		{renderBar("x", 1.7, 4), "[####] 100% x"},
		{renderBar("x", -1, 4), "[....]   0% x"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestAccept(t *testing.T) {
	mem := func(delta int64) *MemoryResult { return &MemoryResult{DeltaBytes: delta} }
	for _, tc := range []struct {
		name                 string
		users                int
		r                    TestResult
		ram, cleanup, lookup string
		studyUsers           int
	}{
		{"all pass at 50K", 50_000, TestResult{Memory: mem(12_370_000), Purge: PurgeResult{Ms: 131}, Latency: LatencyResult{P50us: 47}},
			"PASS", "PASS", "PASS", 50_000},
		{"a Redis round trip fails the 1 µs row", 100, TestResult{Memory: mem(24_300), Purge: PurgeResult{Ms: 0.5}, Latency: LatencyResult{P50us: 40}},
			"PASS", "PASS", "FAIL", 100},
		{"the limit itself fails: the study says strictly less", 1_000, TestResult{Memory: mem(5_000_000), Purge: PurgeResult{Ms: 50}, Latency: LatencyResult{P50us: 10}},
			"FAIL", "FAIL", "FAIL", 1_000},
		{"no memory figure: RAM is n/a", 10_000, TestResult{Purge: PurgeResult{Ms: 20}, Latency: LatencyResult{P50us: 99}},
			"n/a", "PASS", "PASS", 10_000},
		{"beyond the study's table", 100_000, TestResult{Memory: mem(1), Purge: PurgeResult{Ms: 1}, Latency: LatencyResult{P50us: 1}},
			"n/a", "n/a", "n/a", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := accept(tc.users, tc.r)
			if a.RAM.Status != tc.ram || a.Cleanup.Status != tc.cleanup || a.Lookup.Status != tc.lookup || a.StudyUsers != tc.studyUsers {
				t.Errorf("accept = RAM %s, cleanup %s, lookup %s, row %d; want %s, %s, %s, %d",
					a.RAM.Status, a.Cleanup.Status, a.Lookup.Status, a.StudyUsers, tc.ram, tc.cleanup, tc.lookup, tc.studyUsers)
			}
		})
	}
}

// sampleReport is a report with one figure in every column, the three
// tests at each of users (50,000 if none).
func sampleReport(users ...int) *Report {
	if len(users) == 0 {
		users = []int{50_000}
	}
	r := &Report{
		Tool: "floodgate loadgen",
		Environment: Environment{
			Target: "embedded redis-server on 127.0.0.1:1", Mode: modeEmbedded, MemoryMeasured: true,
			Server:    serverInfo{Version: "7.0.15", Mode: "standalone", Masters: 1, Allocator: "jemalloc-5.3.0", ZsetListpackEntries: "128", ZsetListpackValue: "64"},
			GoVersion: "go1.26", GOOS: "linux", GOARCH: "amd64", CPUs: 2, CommandLine: "go run ./cmd/loadgen --users 50000",
			Seed: 1, IdleSeconds: 2, Goroutines: 32, Lookups: 10_000, Prefix: "fgl:abcde:",
		},
		WallSeconds: 21.5,
	}
	for _, u := range users {
		r.Scenarios = append(r.Scenarios, sampleScenario(u))
	}
	return r
}

func sampleScenario(users int) ScenarioResult {
	above := int64(144)
	keysMs, memMs := 388.89, 390.5
	sc := ScenarioResult{Users: users}
	for _, test := range allTests {
		tr := TestResult{
			Test: test, Users: users, Config: "cooldown 1h",
			Memory:     &MemoryResult{DeltaBytes: 5_850_000, BytesPerUser: 117, SampleKeys: 200, MemoryUsagePerUser: 72, NotInMemoryUsagePerUser: 45, Encoding: "int", StudyEstimateBytes: studyEstimate(test, 50_000)},
			Keys:       int64(users),
			Latency:    LatencyResult{Lookups: 10_000, P50us: 31, P99us: 91, P999us: 426, AllowedFraction: 0.83, CacheSize: 10_000, CachedP50us: 0.4, CachedP99us: 55, CachedFraction: 0.17},
			Throughput: ThroughputResult{Goroutines: 32, Decisions1PerSec: 26_300, Ping1PerSec: 42_800, Ratio1: 0.61, DecisionsNPerSec: 33_900, PingNPerSec: 60_200, RatioN: math.NaN(), PingP50us: 20},
			Purge:      PurgeResult{Ms: 122.05, Keys: 50_000, MemoryAboveBaselineBytes: &above},
			Expiry:     &ExpiryResult{Keys: 50_000, ExpiredKeys: 50_000, KeysReclaimedMs: &keysMs, MemoryReclaimedMs: &memMs},
			Server:     ServerTime{Decisions: 1000, ScriptUsPerDecision: 5.2, CPUUsPerDecision: 7.1, CeilingPerSec: 141_000},
			Shards:     []ShardResult{{Node: "127.0.0.1:1", Keys: 50_000, DeltaBytes: 5_850_000, BytesPerUser: 117}},
			Spread:     1,
		}
		if test == testFull {
			tr.HotKeys = []HotKeyResult{{Op: "Bucket.Allow, API bucket (wikipedia)", PerSecond: 40_000,
				ServerTime: ServerTime{Decisions: 100, ScriptUsPerDecision: 4.4, CPUUsPerDecision: 9.5, CeilingPerSec: 105_000}}}
			tr.Shared = SharedState{Keys: 5, Written: "API rates | slots"}
			tr.Expiry.MemoryReclaimedMs = nil
			tr.Expiry.MemoryAboveBaselineBytes = 70_000
		}
		tr.Shards[0].ServerTime = tr.Server
		tr.Acceptance = accept(users, tr)
		sc.Tests = append(sc.Tests, tr)
	}
	return sc
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport(defaultUsers...).writeText(&b, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "Floodgate loadgen on a throwaway redis-server (Redis 7.0.15)") {
		t.Errorf("first line %q", lines[0])
	}
	// One screen of at most 100 columns: the four sizes x three tests.
	if len(lines) > 30 {
		t.Errorf("default output is %d lines, want one screen (<= 30):\n%s", len(lines), out)
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	for _, want := range []string{
		"B/user", "x PING", "50,000  cooldown", "117 B", "5.85 MB", "31 µs", "122.05 ms", "PASS",
		"Yes: RAM is under 10 MB for 10K users", "Implement per-user cooldowns.", "--detail",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("default output lacks %q:\n%s", want, out)
		}
	}
	// The rest is behind --detail.
	for _, not := range []string{"Command:", "MEMORY USAGE", "p99.9", "Speed per path"} {
		if strings.Contains(out, not) {
			t.Errorf("default output shows %q, a --detail figure", not)
		}
	}
	checkAligned(t, out)

	b.Reset()
	if err := sampleReport(50_000).writeText(&b, true); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	for _, want := range []string{
		"version 7.0.15", "zset-max-listpack-entries 128", "Command: go run ./cmd/loadgen --users 50000",
		"Full test: users plus API rates | slots.",
		"72 B", "+45 B", "3.80 MB", "16.00 MB", "91 µs", "426 µs", "83%", "0.4 µs", "17%",
		"26.3k/s", "0.61", "32 goroutines", "+144 B", "388.89 ms", "no: 70.0 kB over",
		"cooldown denial", "window denial, 20 of 20", "allow, 5-19 entries (83%)", "7.1", "141.0k/s",
		"127.0.0.1:1", "Bucket.Allow, API bucket (wikipedia)", "40.0k/s", "105.0k/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--detail output lacks %q", want)
		}
	}
	checkAligned(t, out)
}

// checkAligned: every row of a table (lines starting with a space, a digit
// or a rule) is as wide as the rule under its header.
func checkAligned(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	row := func(l string) bool { return l != "" && strings.ContainsRune(" -0123456789", rune(l[0])) }
	for i, l := range lines {
		if !strings.HasPrefix(strings.TrimLeft(l, " "), "---") {
			continue
		}
		w := utf8.RuneCountInString(l)
		for j := i - 1; j < len(lines) && row(lines[j]); j++ {
			if got := utf8.RuneCountInString(lines[j]); got != w {
				t.Errorf("line %q is %d runes wide, its table %d", lines[j], got, w)
			}
		}
	}
}

// Without redis-server the first line says what cannot be measured and
// the command that fixes it; only key counts are shown.
func TestWriteTextWithoutRedis(t *testing.T) {
	r := sampleReport(100)
	r.Environment.Mode, r.Environment.MemoryMeasured = modeMiniredis, false
	for i := range r.Scenarios[0].Tests {
		x := &r.Scenarios[0].Tests[i]
		x.Memory, x.Expiry, x.Latency, x.Throughput = nil, nil, LatencyResult{}, ThroughputResult{}
		x.WrittenWith = "Allow (first request)"
	}
	var b bytes.Buffer
	if err := r.writeText(&b, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	first, _, _ := strings.Cut(out, "\n")
	if !strings.Contains(first, "apt-get install -y redis-server") || !strings.Contains(first, "memory") {
		t.Errorf("first line %q: want what is not measured and the fix", first)
	}
	for _, want := range []string{"keys/user", "1.00", "No verdict"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"B/user", "p50", "x PING", "PASS", "FAIL"} {
		if strings.Contains(out, not) {
			t.Errorf("output shows %q, which miniredis cannot measure:\n%s", not, out)
		}
	}
}

func TestVerdict(t *testing.T) {
	one := func(test string, users int, perUser float64, lookup string) *Report {
		r := &Report{Environment: Environment{MemoryMeasured: true, Mode: modeEmbedded}}
		x := TestResult{Test: test, Users: users, Memory: &MemoryResult{BytesPerUser: perUser, DeltaBytes: int64(perUser) * int64(users)},
			Throughput: ThroughputResult{PingP50us: 24}, Latency: LatencyResult{CachedP50us: 0.3, CachedFraction: 0.9}}
		x.Acceptance = AcceptanceResult{RAM: Check{Status: "PASS"}, Cleanup: Check{Status: "PASS"}, Lookup: Check{Status: lookup}}
		r.Scenarios = []ScenarioResult{{Users: users, Tests: []TestResult{x}}}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *Report
		want []string
	}{
		{"the study's case", one(testFull, 10_000, 253, "PASS"),
			[]string{"Yes: RAM is under 10 MB for 10K users, 2.53 MB at 10,000 users with the full test (253 B/user)", "Every measured row passes"}},
		{"scaled from another size", one(testHourly, 50_000, 293, "PASS"),
			[]string{"Yes", "2.93 MB at 10,000 users (293 B/user, measured with the hourly test at 50,000 users)"}},
		{"over 10 MB", one(testFull, 10_000, 2_000, "PASS"), []string{"No: RAM is over the study's 10 MB", "under its 50 MB alarm"}},
		{"over 50 MB", one(testFull, 10_000, 6_000, "PASS"), []string{"No: 60.00 MB", "optimise"}},
		{"lookup fails, and why", one(testFull, 100, 253, "FAIL"),
			[]string{"Lookup fails at 100 users", "network round trip (PING p50 here: 24 µs)", "deny cache: 0.3 µs"}},
		{"no memory", &Report{}, []string{"No verdict"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(tc.r.verdict(), " ")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("verdict %q lacks %q", got, w)
				}
			}
		})
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().writeMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.HasPrefix(out, "<!-- generated by: go run ./cmd/loadgen --users 50000 -->") {
		t.Errorf("markdown does not start with the command that made it:\n%s", out[:80])
	}
	if !strings.Contains(out, `API rates \| slots`) {
		t.Error("a '|' inside a cell is not escaped")
	}
	// Every table row has as many cells as its header.
	var cols int
	tables := 0
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "|") {
			cols = 0
			continue
		}
		n := strings.Count(strings.ReplaceAll(l, `\|`, ""), "|")
		if cols == 0 {
			cols = n
			tables++
			continue
		}
		if n != cols {
			t.Errorf("row %q has %d separators, header %d", l, n, cols)
		}
	}
	if tables != 8 {
		t.Errorf("%d tables, want 8 (summary, memory, latency, throughput, speed per path, cleanup, hot keys, shards)", tables)
	}
	if !strings.Contains(out, "Yes: RAM is under 10 MB") {
		t.Error("markdown lacks the verdict")
	}
}

// Each speed row says which decision path its lookups measure.
func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		x    TestResult
		want string
		path string
	}{
		{TestResult{Test: testCooldown}, "cooldown denial", "denied by the cooldown"},
		{TestResult{Test: testHourly}, "window denial, 20 of 20", "denied by the window (20 of 20"},
		{TestResult{Test: testFull, Latency: LatencyResult{AllowedFraction: 0.58}}, "allow, 5-19 entries (58%)", "allowed on windows of 5-19"},
	} {
		if got := pathLabel(tc.x); got != tc.want {
			t.Errorf("pathLabel(%s) = %q, want %q", tc.x.Test, got, tc.want)
		}
		if got := lookupPath(tc.x.Test); !strings.HasPrefix(got, tc.path) {
			t.Errorf("lookupPath(%s) = %q, want %q...", tc.x.Test, got, tc.path)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().writeJSON(&b); err != nil {
		t.Fatalf("a NaN ratio must not break the JSON: %v", err)
	}
	var got struct {
		Environment struct {
			Server struct {
				Version string `json:"redis_version"`
				Entries string `json:"zset_max_listpack_entries"`
			} `json:"server"`
			GoVersion   string `json:"go_version"`
			CommandLine string `json:"command_line"`
			CPUs        int    `json:"cpus"`
		} `json:"environment"`
		Scenarios []struct {
			Users int `json:"users"`
			Tests []struct {
				Test   string `json:"test"`
				Memory *struct {
					BytesPerUser float64 `json:"bytes_per_user"`
				} `json:"memory"`
				Throughput struct {
					Ratio1 float64 `json:"ratio_1"`
					RatioN float64 `json:"ratio_n"`
				} `json:"throughput"`
				Purge struct {
					Keys int64 `json:"keys"`
				} `json:"purge"`
				Expiry *struct {
					MemoryReclaimedMs *float64 `json:"memory_reclaimed_ms"`
				} `json:"expiry"`
				Acceptance struct {
					Lookup Check `json:"lookup"`
				} `json:"acceptance"`
			} `json:"tests"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	e := got.Environment
	if e.Server.Version != "7.0.15" || e.Server.Entries != "128" || e.GoVersion != "go1.26" || e.CPUs != 2 || !strings.Contains(e.CommandLine, "--users 50000") {
		t.Errorf("environment = %+v", e)
	}
	if len(got.Scenarios) != 1 || len(got.Scenarios[0].Tests) != 3 {
		t.Fatalf("scenarios = %+v", got.Scenarios)
	}
	c := got.Scenarios[0].Tests[0]
	if c.Test != testCooldown || c.Memory == nil || c.Memory.BytesPerUser != 117 || c.Purge.Keys != 50_000 ||
		c.Throughput.Ratio1 != 0.61 || c.Throughput.RatioN != 0 || c.Acceptance.Lookup.Status != "PASS" || c.Acceptance.Lookup.Limit != 1000 {
		t.Errorf("cooldown test = %+v", c)
	}
	if f := got.Scenarios[0].Tests[2]; f.Expiry == nil || f.Expiry.MemoryReclaimedMs != nil {
		t.Errorf("full test: memory that never came back must be null, got %+v", f.Expiry)
	}
}

// --svg writes one well-formed SVG document with both panels and the
// study's estimates beside the measurements.
func TestWriteSVG(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport(100, 1_000, 10_000).writeSVG(&b); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&b)
	var root string
	var texts []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
		case xml.CharData:
			if s := strings.TrimSpace(string(el)); s != "" {
				texts = append(texts, s)
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"Redis memory per user", "Total Redis memory", "users",
		"cooldown: Redis, measured", "full: study's estimate", "study's RAM limit"} {
		if !strings.Contains(all, want) {
			t.Errorf("SVG text lacks %q: %s", want, all)
		}
	}
	// Nothing to draw without memory figures: an error, not an empty file.
	r := sampleReport(100)
	for i := range r.Scenarios[0].Tests {
		r.Scenarios[0].Tests[i].Memory = nil
	}
	if err := r.writeSVG(io.Discard); !errors.Is(err, errNoMemory) {
		t.Errorf("writeSVG without memory = %v, want errNoMemory", err)
	}
}

// A --cluster run at the four sizes still fits one screen of 100 columns:
// the shard table and the spread cover the last test run only.
func TestWriteTextCluster(t *testing.T) {
	r := sampleReport(defaultUsers...)
	r.Environment.Mode, r.Environment.Server.Masters = modeCluster, 3
	for si := range r.Scenarios {
		for ti := range r.Scenarios[si].Tests {
			x := &r.Scenarios[si].Tests[ti]
			x.Shards = []ShardResult{{Node: "127.0.0.1:7001", Keys: 16_500}, {Node: "127.0.0.1:7002", Keys: 16_700}, {Node: "127.0.0.1:7003", Keys: 16_800}}
			x.Spread = spread(x.Shards)
			x.Memory.ReplicaDeltaBytes, x.Memory.ReplicaBytesPerUser = 5_900_000, 118
		}
	}
	var b bytes.Buffer
	if err := r.writeText(&b, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > 40 {
		t.Errorf("%d lines, want at most 40:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("line of %d columns: %q", n, l)
		}
	}
	for _, want := range []string{"3-master Redis Cluster", "Per shard", "127.0.0.1:7003", "16,800",
		"Spread (max/min keys per shard): 50,000 full 1.018", "Replicas: 50,000 full +5.90 MB in all, 118 B per user per copy"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "50,000 hourly 1.018") || strings.Count(out, "127.0.0.1:7001") != 1 {
		t.Errorf("the default output lists every size's spread:\n%s", out)
	}
	checkAligned(t, out)
}
