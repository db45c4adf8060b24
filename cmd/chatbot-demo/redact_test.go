package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/floodgate/floodgate/internal/redisurl/redisurltest"
	"github.com/floodgate/floodgate/limiter"
)

// TestReplicaNeverShowsPasswords runs a replica with each hostile URL of
// the shared table (issue 11 item 7). A URL the library accepts for one
// node points at a miniredis that requires its credentials, so the whole
// replay runs: the debug logs on stderr, the summary and the report on
// stdout are checked. The others fail (bad URL, no Sentinel, no Cluster):
// the error is checked. No secret may appear anywhere.
func TestReplicaNeverShowsPasswords(t *testing.T) {
	ran := 0
	for i, h := range redisurltest.HostileURLs {
		// Named by number: t.TempDir's path would hold the name.
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Logf("URL %q", h.URL)
			m := miniredis.RunT(t)
			u := strings.ReplaceAll(h.URL, "127.0.0.1:1", m.Addr())
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			if o, err := limiter.ParseRedisURL(u, time.Second); err == nil && len(o.Addrs) == 1 && !o.IsClusterMode && o.MasterName == "" && !strings.HasPrefix(u, "unix") && o.TLSConfig == nil {
				if o.Username != "" {
					m.RequireUserAuth(o.Username, o.Password)
				} else {
					m.RequireAuth(o.Password)
				}
				ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
			}
			t.Setenv("FLOODGATE_REDIS_URL", u)
			t.Setenv("FLOODGATE_REDIS_TIMEOUT", "20s")
			t.Setenv("DEMO_REPLICA_ID", "1")
			t.Setenv("DEMO_REPLICAS", "1")
			t.Setenv("DEMO_MESSAGES", "10")
			t.Setenv("DEMO_DURATION", "0s")
			t.Setenv("DEMO_LOG_LEVEL", "debug")
			t.Setenv("DEMO_RUN_ID", "hostile")
			t.Setenv("DEMO_START_AT", fmt.Sprint(time.Now().UnixMilli()))
			var out, errOut bytes.Buffer
			err := Run(ctx, []string{"--replica"}, &out, &errOut)
			shown := map[string]string{"stdout": out.String(), "stderr": errOut.String()}
			if err != nil {
				shown["error"] = err.Error()
				if !strings.Contains(err.Error(), "REDIS_URL") && !strings.Contains(err.Error(), "redis ") {
					t.Fatalf("the replica failed before the URL mattered: %v", err)
				}
			} else {
				ran++
				if !strings.Contains(out.String(), "xxxxx") || !strings.Contains(errOut.String(), "xxxxx") {
					t.Errorf("the report or the logs do not show the redacted URL:\n%s\n%s", out.String(), errOut.String())
				}
			}
			for where, s := range shown {
				for _, sec := range h.Secrets {
					if strings.Contains(s, sec) {
						t.Errorf("%s shows %q:\n%s", where, sec, s)
					}
				}
			}
		})
	}
	if ran == 0 {
		t.Fatal("no hostile URL got through to a replay: the log and report paths went untested")
	}
}
