package main

import (
	"strings"
	"testing"
	"time"
)

// TestReadEnvEdges: values are trimmed, set-but-empty is unset, and an
// error quotes what was given (a newline cannot forge a log line) and
// lists every bad variable in a fixed order.
func TestReadEnvEdges(t *testing.T) {
	e, err := readEnv(func(k string) string {
		return map[string]string{"DEMO_REPLICAS": " 5 ", "DEMO_DURATION": "\t2s", "DEMO_OUTPUT": "  ", "DEMO_LOG_LEVEL": "WARN"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Replicas != 5 || e.Duration != 2*time.Second || e.Output != "table" || e.LogLevel.String() != "WARN" {
		t.Fatalf("got %+v", e)
	}

	_, err = readEnv(func(k string) string {
		return map[string]string{"DEMO_RUN_ID": "a\nlevel=ERROR", "DEMO_LOG_LEVEL": "loud", "DEMO_REPLICAS": "many", "DEMO_START_AT": "0"}[k]
	})
	want := `invalid environment: DEMO_REPLICAS="many": want an integer from 1 to 64; ` +
		`DEMO_LOG_LEVEL="loud": want debug, info, warn or error; ` +
		`DEMO_RUN_ID="a\nlevel=ERROR": want 1 to 16 letters or digits; ` +
		`DEMO_START_AT="0": want Unix milliseconds`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error holds a raw newline: %q", err)
	}
}
