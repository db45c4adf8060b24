// Package lua embeds Floodgate's Redis Lua scripts, one file per operation.
//
// The scripts live here rather than under limiter/ because go:embed cannot
// reach a parent directory; each file's header documents its KEYS, ARGV and
// reply.
//
// Logic several scripts share is written once, in lib/*.lua, and pulled in
// at embed time: a script line of the form
//
//	-- include: lib/clock.lua
//
// is replaced by that file's text (a lib file may include another). Source returns the result, so a script's
// SHA (EVALSHA) is computed over exactly what Redis runs. The lib files are
// snippets, not functions: Redis builds a script's functions afresh on
// every call, about 0.1 us each, which the per-user decision (6-10 us of
// server time) would feel. Each lib file's header says which locals it
// reads and sets.
package lua

import (
	"embed"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed *.lua lib/*.lua
var files embed.FS

// includePrefix starts a line that Source replaces with a lib file.
const includePrefix = "-- include: "

// Source returns the text of the named script (for example
// "user_allow.lua"), its includes expanded. It panics when the name or an
// include is unknown: scripts are compiled into the binary, so a missing
// one is a build bug, not input.
func Source(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("lua: no embedded script " + name)
	}
	return expand(name, string(b), 0)
}

// maxIncludeDepth bounds nested includes (a lib file may include
// another), so that a cycle is a clear build bug, not a hang.
const maxIncludeDepth = 4

// expand replaces every include line of src (the text of file name) with
// its lib file, itself expanded.
func expand(name, src string, depth int) string {
	if !strings.Contains(src, includePrefix) {
		return src
	}
	if depth >= maxIncludeDepth {
		panic("lua: includes nested deeper than " + strconv.Itoa(maxIncludeDepth) + " in " + name)
	}
	lines := strings.SplitAfter(src, "\n")
	for i, line := range lines {
		if inc, ok := strings.CutPrefix(line, includePrefix); ok {
			lib := strings.TrimSpace(inc)
			if !strings.HasPrefix(lib, "lib/") {
				panic("lua: " + name + " includes " + lib + ", not a lib/ file")
			}
			text, err := files.ReadFile(lib)
			if err != nil {
				panic("lua: " + name + " includes unknown " + lib)
			}
			lines[i] = expand(lib, string(text), depth+1)
		}
	}
	return strings.Join(lines, "")
}

// Names lists the embedded scripts (one per operation, not the lib files)
// in lexical order.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}
