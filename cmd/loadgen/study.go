package main

import (
	"fmt"
	"strings"
	"time"
)

// The study's figures, all in this file. They come from
// benchmark-cooldowns-ram.md (in French, not in this repository; README
// "The RAM benchmark" and docs/benchmarks.md tell its story): a Twitch bot
// moving from one global cooldown to per-user cooldowns and hourly limits
// in Python dicts, which estimated the RAM that would take and set the
// limits below. loadgen repeats its benchmark on real Redis and holds the
// measurements to these figures; docs/benchmarks.md shows them beside the
// measured ones.

// defaultUsers are the study's four scenarios ("Scénarios testés"), and
// scenarioLabels its name for each.
var (
	defaultUsers   = []int{100, 1_000, 10_000, 50_000}
	scenarioLabels = []string{"average stream", "big stream / raid", "viral stream", "exceptional event"}
)

// The study's three tests per scenario, in the order they run: a
// Dict[str, datetime] of cooldowns, a dict of hourly timestamp lists, and
// the full RateLimiter holding both plus the endpoints' failures.
const (
	testCooldown = "cooldown"
	testHourly   = "hourly"
	testFull     = "full"
)

var allTests = []string{testCooldown, testHourly, testFull}

// The study's message counts: 20 per user in the hourly test, 5 to 20 in
// the full test (random.randint(5, 20)).
const (
	hourlyMessages  = 20
	fullMinMessages = 5
	fullMaxMessages = 20
)

// userName is the study's generate_username: "user_00042".
func userName(i int) string { return fmt.Sprintf("user_%05d", i) }

// studyEndpoints are the full RateLimiter's endpoint_failures keys.
var studyEndpoints = []string{"http://localhost:1234", "https://api.openai.com"}

// studyEstimate is the study's theoretical Python figure for a test
// ("Résultats attendus"): 76 B/user for Dict[str, datetime], 240 B/user for
// 20 timestamps, and its "RAM Total Estimé" (32 KB / 316 KB / 3.2 MB /
// 16 MB) for the full one, 316 B/user at other sizes.
func studyEstimate(test string, users int) int64 {
	switch test {
	case testCooldown:
		return int64(users) * 76
	case testHourly:
		return int64(users) * 240
	}
	switch users {
	case 100:
		return 32_000
	case 1_000:
		return 316_000
	case 10_000:
		return 3_200_000
	case 50_000:
		return 16_000_000
	}
	return int64(users) * 316
}

// acceptanceRow is a line of the study's "Critères d'acceptation": the
// most RAM, cleanup time and lookup time it accepts at a number of users.
type acceptanceRow struct {
	users   int
	ram     int64
	cleanup time.Duration
	lookup  time.Duration
}

var acceptanceTable = []acceptanceRow{
	{100, 1_000_000, 10 * time.Millisecond, time.Microsecond},
	{1_000, 5_000_000, 50 * time.Millisecond, 10 * time.Microsecond},
	{10_000, 20_000_000, 500 * time.Millisecond, 100 * time.Microsecond},
	{50_000, 50_000_000, 2 * time.Second, time.Millisecond},
}

// The study's question and its answers: RAM under 10 MB for 10K users
// means "implement per-user cooldowns"; over 50 MB, "optimise first".
const (
	questionUsers = 10_000
	questionBytes = 10e6
	alarmBytes    = 50e6
)

// acceptanceRowFor is the study's row for n users: the smallest scenario
// at least as large. ok is false above 50,000 users.
func acceptanceRowFor(users int) (acceptanceRow, bool) {
	for _, r := range acceptanceTable {
		if users <= r.users {
			return r, true
		}
	}
	return acceptanceRow{}, false
}

// scenarioLabel is the study's name for a number of users, if it has one.
func scenarioLabel(users int) string {
	for i, n := range defaultUsers {
		if users == n {
			return scenarioLabels[i]
		}
	}
	return ""
}

// acceptanceLegend says what the PASS/FAIL columns hold the figures to,
// from acceptanceTable, in two lines.
func acceptanceLegend() []string {
	var users, ram, cleanup, lookup []string
	for _, r := range acceptanceTable {
		u := fmtCount(r.users)
		if r.users%1000 == 0 {
			u = fmtCount(r.users/1000) + "K"
		}
		users = append(users, u)
		ram = append(ram, fmt.Sprint(r.ram/1_000_000))
		cleanup = append(cleanup, fmtCount(int(r.cleanup.Milliseconds())))
		lookup = append(lookup, fmtCount(int(r.lookup.Microseconds())))
	}
	return []string{
		fmt.Sprintf("Study's limits at %s users (other sizes: the next row up):", strings.Join(users, " / ")),
		fmt.Sprintf("RAM < %s MB, cleanup < %s ms, lookup < %s µs.", strings.Join(ram, " / "), strings.Join(cleanup, " / "), strings.Join(lookup, " / ")),
	}
}
