package lua

import (
	"strings"
	"testing"
)

// Every include is expanded: Source hands Redis whole scripts, and a lib
// file's text appears where its include line was.
func TestSourceExpandsIncludes(t *testing.T) {
	clock, err := files.ReadFile("lib/clock.lua")
	if err != nil {
		t.Fatal(err)
	}
	uses := 0
	for _, name := range Names() {
		src := Source(name)
		if strings.Contains(src, includePrefix) {
			t.Errorf("%s: an include line is left in the source", name)
		}
		raw, _ := files.ReadFile(name)
		if strings.Contains(string(raw), includePrefix+"lib/clock.lua") {
			uses++
			if !strings.Contains(src, string(clock)) {
				t.Errorf("%s: lib/clock.lua is not in its source", name)
			}
		}
		if strings.Contains(string(raw), includePrefix+"lib/clock_us.lua") {
			uses++
		}
		if !strings.HasPrefix(src, "-- "+name) {
			t.Errorf("%s: source does not start with its header", name)
		}
	}
	if uses < 10 {
		t.Fatalf("%d scripts include lib/clock.lua, want at least 10", uses)
	}
}

// Names lists operations only: lib files are not scripts of their own.
func TestNamesListsOperationsOnly(t *testing.T) {
	for _, name := range Names() {
		if !strings.HasSuffix(name, ".lua") || strings.Contains(name, "/") {
			t.Errorf("Names lists %q", name)
		}
	}
}

// Each piece of logic is written once: the TIME conversion appears only
// in lib/clock.lua and lib/clock_us.lua, the skew clamp only in
// lib/user_skew.lua.
func TestSharedLogicWrittenOnce(t *testing.T) {
	for _, name := range Names() {
		raw, _ := files.ReadFile(name)
		for _, dup := range []string{"redis.call('TIME')", "if retry > ttl then", "wwait > cwait"} {
			if strings.Contains(string(raw), dup) {
				t.Errorf("%s repeats %q: use the lib file", name, dup)
			}
		}
	}
}
