// Package lua embeds Floodgate's Redis Lua scripts, one file per operation.
//
// The scripts live here rather than under limiter/ because go:embed cannot
// reach a parent directory; each file's header documents its KEYS, ARGV and
// reply.
package lua

import (
	"embed"
	"io/fs"
	"sort"
)

//go:embed *.lua
var files embed.FS

// Source returns the text of the named script (for example
// "user_allow.lua"). It panics when the name is unknown: scripts are
// compiled into the binary, so a missing one is a build bug, not input.
func Source(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("lua: no embedded script " + name)
	}
	return string(b)
}

// Names lists the embedded scripts in lexical order.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}
