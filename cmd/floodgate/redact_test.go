package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisurl/redisurltest"
)

// TestCommandsNeverShowPasswords runs every command, serve included, with
// each hostile URL (nothing listens at 127.0.0.1:1, so the URL's errors
// show too): no secret reaches stdout, stderr or the returned error.
func TestCommandsNeverShowPasswords(t *testing.T) {
	runs := [][]string{
		{"config"}, {"config", "--json"}, {"user", "alice"}, {"reset", "alice"},
		{"slots", "llm"}, {"endpoints", "llm", "a"}, {"serve", "--addr", "127.0.0.1:0"},
	}
	for i, h := range redisurltest.HostileURLs {
		if redisurltest.LeftOutByShort(i) {
			continue
		}
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Logf("URL %q", h.URL)
			t.Setenv("FLOODGATE_REDIS_URL", h.URL)
			t.Setenv("FLOODGATE_REDIS_TIMEOUT", "100ms")
			for _, args := range runs {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				var stdout, stderr bytes.Buffer
				err := Run(ctx, args, &stdout, &stderr)
				cancel()
				shown := stdout.String() + "\n" + stderr.String()
				if err != nil {
					shown += "\n" + err.Error()
				}
				if strings.TrimSpace(shown) == "" {
					t.Errorf("%q printed nothing and returned no error", args)
				}
				for _, s := range h.Secrets {
					if strings.Contains(shown, s) {
						t.Errorf("%q shows secret %q:\n%s", args, s, shown)
					}
				}
			}
		})
	}
}
