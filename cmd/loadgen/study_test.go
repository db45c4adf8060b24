package main

import (
	"strings"
	"testing"
	"time"
)

func TestAcceptanceRows(t *testing.T) {
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
		r, ok := acceptanceRowFor(tc.users)
		if ok != tc.ok || r.users != tc.row || r.ram != tc.ram || r.cleanup != tc.cleanup || r.lookup != tc.lookup {
			t.Errorf("acceptanceRowFor(%d) = %+v, %v; want row %d ok %v", tc.users, r, ok, tc.row, tc.ok)
		}
		if got := scenarioLabel(tc.users); got != tc.label {
			t.Errorf("scenarioLabel(%d) = %q, want %q", tc.users, got, tc.label)
		}
	}
}

func TestStudyEstimate(t *testing.T) {
	for _, tc := range []struct {
		test  string
		users int
		want  int64
	}{
		{testCooldown, 100, 7_600}, // the study's "RAM Simple"
		{testCooldown, 50_000, 3_800_000},
		{testHourly, 100, 24_000}, // "+24 KB (20 msgs/h)"
		{testHourly, 50_000, 12_000_000},
		{testFull, 100, 32_000}, // "RAM Total Estimé"
		{testFull, 1_000, 316_000},
		{testFull, 10_000, 3_200_000},
		{testFull, 50_000, 16_000_000},
		{testFull, 2_000, 632_000}, // off the table: 316 B/user
	} {
		if got := studyEstimate(tc.test, tc.users); got != tc.want {
			t.Errorf("studyEstimate(%s, %d) = %d, want %d", tc.test, tc.users, got, tc.want)
		}
	}
}

// The legend under the summary states acceptanceTable's limits.
func TestAcceptanceLegend(t *testing.T) {
	want := "Study's limits at 100 / 1K / 10K / 50K users (other sizes: the next row up):\n" +
		"RAM < 1 / 5 / 20 / 50 MB, cleanup < 10 / 50 / 500 / 2,000 ms, lookup < 1 / 10 / 100 / 1,000 µs."
	if got := strings.Join(acceptanceLegend(), "\n"); got != want {
		t.Errorf("acceptanceLegend() =\n%s\nwant\n%s", got, want)
	}
}
