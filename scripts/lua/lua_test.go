package lua

import (
	"strings"
	"testing"
)

// Every include is expanded: Source hands Redis whole scripts, and a lib
// file's text appears where its include line was.
func TestSourceExpandsIncludes(t *testing.T) {
	uses := 0
	for _, name := range Names() {
		src := Source(name)
		if strings.Contains(src, includePrefix) {
			t.Errorf("%s: an include line is left in the source", name)
		}
		raw, _ := files.ReadFile(name)
		// lib/clock.lua itself includes lib/clock_read.lua.
		for _, lib := range []string{"lib/clock.lua", "lib/clock_read.lua"} {
			if !strings.Contains(string(raw), includePrefix+lib+"\n") {
				continue
			}
			uses++
			text, err := files.ReadFile(lib)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(src, expand(lib, string(text), 1)) {
				t.Errorf("%s: %s is not in its source", name, lib)
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
// in lib/clock_read.lua and lib/clock_us.lua, the skew clamp only in
// lib/user_skew.lua and lib/budget_capped.lua, a backoff key's TTL only
// in lib/backoff_ttl.lua.
func TestSharedLogicWrittenOnce(t *testing.T) {
	for _, name := range Names() {
		raw, _ := files.ReadFile(name)
		for _, dup := range []string{"redis.call('TIME')", "if retry > ttl then", "if w > ttl then", "wwait > cwait", "math.min(dl +"} {
			if strings.Contains(string(raw), dup) {
				t.Errorf("%s repeats %q: use the lib file", name, dup)
			}
		}
	}
}
