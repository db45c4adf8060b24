package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/soakreport"
)

// TestSoak runs `chatbot-demo soak -duration 60s`: the demo chat through 2
// floodgate serve sidecars and 2 library replicas while Redis is paused
// and killed on a schedule (docs/reliability.md, "Soak"). No user may be
// admitted above the limit outside the outage windows, and no call may
// fail: during an outage the default failure mode (local) decides.
func TestSoak(t *testing.T) {
	needRedisServer(t)
	skipIfShort(t) // runs for a minute
	demo := commandBin(t, "chatbot-demo")
	fg := commandBin(t, "floodgate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, demo, "soak", "-duration", "60s", "-json", "-floodgate", fg)
	cmd.Env = serveEnv(nil, nil)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rep soakreport.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("soak: %v; report %q: %v\n%s", runErr, stdout.String(), err, stderr.String())
	}
	t.Logf("soak report: %s", bytes.TrimSpace(stdout.Bytes()))
	if rep.OverLimitOutside > 0 {
		t.Errorf("%d users admitted above their limit outside the outage windows: %v", rep.OverLimitOutside, rep.OutsideExamples)
	}
	if runErr != nil && rep.OverLimitOutside == 0 {
		t.Errorf("soak exited with %v\n%s", runErr, stderr.String())
	}
	// Every kind of error is unexpected: an outage gives degraded
	// decisions, never failed calls.
	for kind, n := range rep.Errors {
		t.Errorf("%d calls failed with %q", n, kind)
	}
	if rep.OverDeadline > 0 {
		t.Errorf("%d calls took longer than the %v ms deadline (max %.1f ms)", rep.OverDeadline, rep.DeadlineMs, rep.MaxCallMs)
	}
	// The schedule really ran: 2 pauses and 2 kills in 60 s, with
	// degraded decisions during them, and the chat's 100 messages a second.
	if len(rep.Faults) != 4 || rep.Degraded == 0 {
		t.Errorf("%d faults and %d degraded decisions, want 4 faults and some degraded decisions", len(rep.Faults), rep.Degraded)
	}
	// Goroutines return to where they were after the warm-up (the end
	// figure is taken with idle connections closed); a few of slack for
	// the scrape's own connection and the runtime's.
	if len(rep.Start) != 3 || len(rep.End) != 3 {
		t.Errorf("start %v, end %v: want the soak process and 2 sidecars", rep.Start, rep.End)
	}
	for i := range min(len(rep.Start), len(rep.End)) {
		if s, e := rep.Start[i], rep.End[i]; e.Goroutines > s.Goroutines+10 {
			t.Errorf("%s: %d goroutines at the end, %d at the start", s.Name, e.Goroutines, s.Goroutines)
		}
	}
	if rep.Decisions < 5900 {
		t.Errorf("%d decisions, want the chat's 6000", rep.Decisions)
	}
}
