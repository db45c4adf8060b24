package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"testing"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{Usagef("bad flag %q", "x"), 2},
		{fmt.Errorf("loading: %w", Usagef("bad")), 2},
		{ErrUsage, 2},
		{flag.ErrHelp, 2},
		{fmt.Errorf("run: %w", context.Canceled), 130},
		{errors.New("boom"), 1},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{ErrUsage, ""},
		{flag.ErrHelp, ""},
		{context.Canceled, ""},
		{errors.New("floodgate: listen:\n  address in use"), "floodgate: listen:; address in use"},
		{fmt.Errorf("interrupted: %w", context.Canceled), "floodgate: interrupted: context canceled"},
		{Usagef("no   command"), "floodgate: no command"},
	} {
		if got := Message("floodgate", tc.err); got != tc.want {
			t.Errorf("Message(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb  c\n":   "a; b c;",
		"one line":    "one line",
		"  padded  ":  "padded",
		"x\n\n  y\tz": "x; ; y z",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
