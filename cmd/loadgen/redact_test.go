package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/redisurl/redisurltest"
)

// TestRunNeverShowsPasswords runs loadgen with each hostile URL of the
// shared table (issue 11 item 7): a URL the library rejects shows in the
// error; one it accepts points at a miniredis that requires its
// credentials, so the whole run happens and the report header, the
// status lines, the command line and the --json and --markdown files are
// all checked. No secret may appear in any of them.
func TestRunNeverShowsPasswords(t *testing.T) {
	redisurltest.Check(t, func(t *testing.T, u string, _ bool) (map[string]string, bool) {
		dir := t.TempDir()
		jsonFile, mdFile := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.md")
		args := []string{"--users", "10", "--tests", "cooldown", "--lookups", "20", "--duration", "50ms", "--idle", "100ms",
			"--redis-url", u, "--json", jsonFile, "--markdown", mdFile}
		var stdout, stderr bytes.Buffer
		err := Run(context.Background(), args, &stdout, &stderr)
		shown := map[string]string{"stdout": stdout.String(), "stderr": stderr.String()}
		if err != nil {
			shown["error"] = err.Error()
			if !strings.Contains(err.Error(), "-redis-url") {
				t.Fatalf("the run failed before the URL mattered: %v", err)
			}
			return shown, false
		}
		for _, f := range []string{jsonFile, mdFile} {
			b, rerr := os.ReadFile(f)
			if rerr != nil {
				t.Fatal(rerr)
			}
			shown[filepath.Base(f)] = string(b)
		}
		if !strings.Contains(shown["r.json"], "xxxxx") {
			t.Errorf("the JSON report does not show the redacted URL:\n%s", shown["r.json"])
		}
		return shown, true
	})
}
