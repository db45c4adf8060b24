package main

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/soakreport"
)

// overLimit counts a breach only when it is certain from the callers'
// clocks, and excuses it when a degraded admission or one inside an
// outage window took part.
func TestSoakOverLimit(t *testing.T) {
	begin := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64, degraded bool) admission {
		pre := begin.Add(time.Duration(s * float64(time.Second)))
		return admission{User: "u", Pre: pre, Post: pre.Add(10 * time.Millisecond), Degraded: degraded, Client: "c"}
	}
	faults := []soakreport.Fault{{Kind: "pause", From: 100, Until: 104}}
	for _, tc := range []struct {
		name              string
		adm               []admission
		inOutage, outside int
	}{
		{"within the limits", []admission{at(0, false), at(1, false), at(2, false)}, 0, 0},
		{"cooldown breach", []admission{at(0, false), at(0.1, false)}, 0, 1},
		{"cooldown breach, one degraded", []admission{at(0, false), at(0.1, true)}, 1, 0},
		{"window breach", []admission{at(0, false), at(1, false), at(2, false), at(3, false)}, 0, 1},
		{"window breach, one in an outage", []admission{at(99, false), at(100.5, false), at(102, false), at(103, false)}, 1, 0},
		{"window passed", []admission{at(0, false), at(1, false), at(2, false), at(61, false)}, 0, 0},
		// The calls overlap the cooldown's edge: not certain, not counted.
		{"uncertain", []admission{at(0, false), at(0.195, false)}, 0, 0},
	} {
		in, out, _ := overLimit(tc.adm, faults, begin, 200*time.Millisecond, time.Minute, 3)
		if in != tc.inOutage || out != tc.outside {
			t.Errorf("%s: %d in outage, %d outside; want %d, %d", tc.name, in, out, tc.inOutage, tc.outside)
		}
	}
}
