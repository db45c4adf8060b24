package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
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
		{fmtCheck(Check{Status: "PASS", Measured: 12_600, Limit: 1_000_000, Unit: "bytes"}), "PASS 12.6 kB (< 1.00 MB)"},
		{fmtCheck(Check{Status: "FAIL", Measured: 31, Limit: 1, Unit: "us"}), "FAIL 31 µs (< 1.0 µs)"},
		{fmtCheck(Check{Status: "PASS", Measured: 122.05, Limit: 2000, Unit: "ms"}), "PASS 122.05 ms (< 2.00 s)"},
		{fmtCheck(Check{Status: "n/a"}), "n/a"},
		{shellQuote("--users"), "--users"},
		{shellQuote("100,1000"), "100,1000"},
		{shellQuote("a b"), "'a b'"},
		{shellQuote("it's"), `'it'\''s'`},
		{shellQuote(""), "''"},
		{commandLine([]string{"--users", "100", "--redis-url", "redis://:pw@h:1"}), "go run ./cmd/loadgen --users 100 --redis-url redis://:xxxxx@h:1"},
		{commandLine([]string{"-redis-url=redis://:pw@h:1"}), "go run ./cmd/loadgen -redis-url=redis://:xxxxx@h:1"},
		{oneLine("a\nb  c\n"), "a; b c;"},
		{renderBar("x", 0.5, 10), "[#####.....]  50% x"},
		{renderBar("x", 1.7, 4), "[####] 100% x"},
		{renderBar("x", -1, 4), "[....]   0% x"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSeedRows(t *testing.T) {
	for _, tc := range []struct {
		users   int
		row     int
		ok      bool
		label   string
		ram     int64
		cleanup time.Duration
		lookup  time.Duration
	}{
		{1, 100, true, "", 1_000_000, 10 * time.Millisecond, time.Microsecond},
		{100, 100, true, "average stream", 1_000_000, 10 * time.Millisecond, time.Microsecond},
		{101, 1_000, true, "", 5_000_000, 50 * time.Millisecond, 10 * time.Microsecond},
		{10_000, 10_000, true, "viral stream", 20_000_000, 500 * time.Millisecond, 100 * time.Microsecond},
		{50_000, 50_000, true, "exceptional event", 50_000_000, 2 * time.Second, time.Millisecond},
		{50_001, 0, false, "", 0, 0, 0},
	} {
		r, ok := seedRowFor(tc.users)
		if ok != tc.ok || r.users != tc.row || r.ram != tc.ram || r.cleanup != tc.cleanup || r.lookup != tc.lookup {
			t.Errorf("seedRowFor(%d) = %+v, %v; want row %d ok %v", tc.users, r, ok, tc.row, tc.ok)
		}
		if got := scenarioLabel(tc.users); got != tc.label {
			t.Errorf("scenarioLabel(%d) = %q, want %q", tc.users, got, tc.label)
		}
	}
}

func TestSeedEstimate(t *testing.T) {
	for _, tc := range []struct {
		test  string
		users int
		want  int64
	}{
		{testCooldown, 100, 7_600}, // the seed's "RAM Simple"
		{testCooldown, 50_000, 3_800_000},
		{testHourly, 100, 24_000}, // "+24 KB (20 msgs/h)"
		{testHourly, 50_000, 12_000_000},
		{testFull, 100, 32_000}, // "RAM Total Estimé"
		{testFull, 1_000, 316_000},
		{testFull, 10_000, 3_200_000},
		{testFull, 50_000, 16_000_000},
		{testFull, 2_000, 632_000}, // off the table: 316 B/user
	} {
		if got := seedEstimate(tc.test, tc.users); got != tc.want {
			t.Errorf("seedEstimate(%s, %d) = %d, want %d", tc.test, tc.users, got, tc.want)
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
		seedUsers            int
	}{
		{"all pass at 50K", 50_000, TestResult{Memory: mem(12_370_000), Purge: PurgeResult{Ms: 131}, Latency: LatencyResult{P50us: 47}},
			"PASS", "PASS", "PASS", 50_000},
		{"a Redis round trip fails the 1 µs row", 100, TestResult{Memory: mem(24_300), Purge: PurgeResult{Ms: 0.5}, Latency: LatencyResult{P50us: 40}},
			"PASS", "PASS", "FAIL", 100},
		{"the limit itself fails: the seed says strictly less", 1_000, TestResult{Memory: mem(5_000_000), Purge: PurgeResult{Ms: 50}, Latency: LatencyResult{P50us: 10}},
			"FAIL", "FAIL", "FAIL", 1_000},
		{"no memory figure: RAM is n/a", 10_000, TestResult{Purge: PurgeResult{Ms: 20}, Latency: LatencyResult{P50us: 99}},
			"n/a", "PASS", "PASS", 10_000},
		{"beyond the seed's table", 100_000, TestResult{Memory: mem(1), Purge: PurgeResult{Ms: 1}, Latency: LatencyResult{P50us: 1}},
			"n/a", "n/a", "n/a", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := accept(tc.users, tc.r)
			if a.RAM.Status != tc.ram || a.Cleanup.Status != tc.cleanup || a.Lookup.Status != tc.lookup || a.SeedUsers != tc.seedUsers {
				t.Errorf("accept = RAM %s, cleanup %s, lookup %s, row %d; want %s, %s, %s, %d",
					a.RAM.Status, a.Cleanup.Status, a.Lookup.Status, a.SeedUsers, tc.ram, tc.cleanup, tc.lookup, tc.seedUsers)
			}
		})
	}
}

// sampleReport is a report with one figure in every column.
func sampleReport() *Report {
	above := int64(144)
	keysMs, memMs := 388.89, 390.5
	r := &Report{
		Tool: "floodgate loadgen",
		Environment: Environment{
			Target: "embedded redis-server on 127.0.0.1:1", Mode: modeEmbedded, MemoryMeasured: true,
			Server:    serverInfo{Version: "7.0.15", Mode: "standalone", Masters: 1, Allocator: "jemalloc-5.3.0", ZsetListpackEntries: "128", ZsetListpackValue: "64"},
			GoVersion: "go1.26", GOOS: "linux", GOARCH: "amd64", CPUs: 2, CommandLine: "go run ./cmd/loadgen --users 50000",
			Seed: 1, IdleSeconds: 2, Goroutines: 32, Lookups: 10_000, Prefix: "fgl:abcde:",
		},
		WallSeconds: 21.5,
		Scenarios:   []ScenarioResult{{Users: 50_000}},
	}
	for _, test := range allTests {
		tr := TestResult{
			Test: test, Users: 50_000, Config: "cooldown 1h",
			Memory:     &MemoryResult{DeltaBytes: 5_850_000, BytesPerUser: 117, SampleKeys: 200, MemoryUsagePerUser: 72, NotInMemoryUsagePerUser: 45, Encoding: "int", SeedEstimateBytes: seedEstimate(test, 50_000)},
			Keys:       50_000,
			Latency:    LatencyResult{Lookups: 10_000, P50us: 31, P99us: 91, P999us: 426, AllowedFraction: 0.83, CacheSize: 10_000, CachedP50us: 0.4, CachedP99us: 55, CachedFraction: 0.17},
			Throughput: ThroughputResult{Goroutines: 32, Decisions1PerSec: 26_300, Ping1PerSec: 42_800, Ratio1: 0.61, DecisionsNPerSec: 33_900, PingNPerSec: 60_200, RatioN: math.NaN(), PingP50us: 20},
			Purge:      PurgeResult{Ms: 122.05, Keys: 50_000, MemoryAboveBaselineBytes: &above},
			Expiry:     &ExpiryResult{Keys: 50_000, KeysReclaimedMs: &keysMs, MemoryReclaimedMs: &memMs},
		}
		if test == testFull {
			tr.Shared = SharedState{Keys: 5, Written: "API rates | slots"}
			tr.Expiry.MemoryReclaimedMs = nil
			tr.Expiry.MemoryAboveBaselineBytes = 70_000
		}
		tr.Acceptance = accept(50_000, tr)
		r.Scenarios[0].Tests = append(r.Scenarios[0].Tests, tr)
	}
	return r
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().writeText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"version 7.0.15", "zset-max-listpack-entries 128", "zset-max-listpack-value 64",
		"Command: go run ./cmd/loadgen --users 50000",
		"Full test: users plus API rates | slots.",
		"50,000  cooldown", "5.85 MB", "117 B", "72 B", "+45 B", "3.80 MB", "16.00 MB",
		"31 µs", "91 µs", "426 µs", "83%", "0.4 µs", "55 µs", "17%", "10,000 users", "26.3k/s", "42.8k/s", "0.61", "32 goroutines",
		"122.05 ms", "+144 B over baseline", "388.89 ms", "no: 70.0 kB over",
		"PASS 5.85 MB (< 50.00 MB)", "PASS 122.05 ms (< 2.00 s)", "PASS 31 µs (< 1.00 ms)",
		"PING p50 in this run: 20 µs", "can take < 1 µs", "local deny cache", "Total: 21.5 s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q", want)
		}
	}
	// Each table's rows line up: every line between a header and its
	// notes has the header's width in runes.
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(strings.TrimLeft(l, " "), "---") {
			continue
		}
		w := utf8.RuneCountInString(l)
		for j := i - 1; j < len(lines) && lines[j] != "" && !strings.HasPrefix(lines[j], "  * "); j++ {
			if got := utf8.RuneCountInString(lines[j]); got != w {
				t.Errorf("line %q is %d runes wide, its table %d", lines[j], got, w)
			}
		}
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
	if tables != 6 {
		t.Errorf("%d tables, want 6 (memory, latency, throughput, cleanup, acceptance, speed)", tables)
	}
}

func TestSpeedTargets(t *testing.T) {
	tr := TestResult{Test: "full",
		Throughput: ThroughputResult{RatioN: 0.55, PingP50us: 60},
		Latency:    LatencyResult{P50us: 70, CachedP50us: 0.3, CachedFraction: 0.9}}
	got := speedRow("100", tr)
	want := []string{"100", "full", "PASS 0.55", "FAIL 1.17", "PASS 0.3 µs"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("speedRow = %q, want %q", got, want)
		}
	}
	tr.Latency.CachedFraction = 0.09
	if got := speedRow("50,000", tr)[4]; got != "n/a (9% cached)" {
		t.Fatalf("cache column with few hits = %q", got)
	}
	r := &Report{WallSeconds: 26.8, Environment: Environment{Users: []int{50_000}, Mode: "embedded"}}
	if got := wallTarget(r); !strings.Contains(got, "PASS 26.8 s") {
		t.Fatalf("wallTarget = %q", got)
	}
	r.WallSeconds = 31
	if got := wallTarget(r); !strings.Contains(got, "FAIL 31.0 s") {
		t.Fatalf("wallTarget = %q", got)
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
