package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisurl/redisurltest"
)

// TestReplicaNeverShowsPasswords runs a replica with each hostile URL of
// the shared table (issue 11 item 7). A URL the library accepts for one
// node points at a miniredis that requires its credentials, so the whole
// replay runs: the debug logs on stderr, the summary and the report on
// stdout are checked. The others fail (bad URL, no Sentinel, no Cluster):
// the error is checked. No secret may appear anywhere.
func TestReplicaNeverShowsPasswords(t *testing.T) {
	redisurltest.Check(t, func(t *testing.T, u string, served bool) (map[string]string, bool) {
		timeout := 500 * time.Millisecond
		if served {
			timeout = 30 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		t.Setenv("FLOODGATE_REDIS_URL", u)
		setLoneReplica(t, "hostile", 10)
		t.Setenv("DEMO_LOG_LEVEL", "debug")
		var out, errOut bytes.Buffer
		err := Run(ctx, []string{"--replica"}, &out, &errOut)
		shown := map[string]string{"stdout": out.String(), "stderr": errOut.String()}
		if err != nil {
			shown["error"] = err.Error()
			if !strings.Contains(err.Error(), "REDIS_URL") && !strings.Contains(err.Error(), "redis ") {
				t.Fatalf("the replica failed before the URL mattered: %v", err)
			}
			return shown, false
		}
		if !strings.Contains(out.String(), "xxxxx") || !strings.Contains(errOut.String(), "xxxxx") {
			t.Errorf("the report or the logs do not show the redacted URL:\n%s\n%s", out.String(), errOut.String())
		}
		return shown, true
	})
}
