package integration_test

import (
	"context"
	"testing"
)

// A lone Allow makes no more allocations than go-redis's Script.Run of the
// textbook sorted-set log deciding the same thing on the same server (a
// cooldown denial, windows of 20): docs/benchmarks.md, issue 22. Counts,
// not times, so it holds on a loaded machine.
func TestAllowAllocsAtMostScriptRun(t *testing.T) {
	rdb := client(t)
	cell := newPeerCell("cooldown", 20)
	prefix := uniquePrefix(t, rdb)
	const users = 100
	ctx := context.Background()
	allocs := map[string]float64{}
	for _, c := range []contender{
		floodgateContender(t, rdb, cell, prefix, users),
		textbookContender(t, rdb, cell, prefix, users),
	} {
		if err := c.reset(ctx); err != nil {
			t.Fatal(err)
		}
		i := 0
		var err error
		allocs[c.name] = testing.AllocsPerRun(500, func() {
			if e := c.op(ctx, i%users); e != nil && err == nil {
				err = e
			}
			i++
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	t.Logf("allocations per decision: floodgate %.0f, textbook Script.Run %.0f", allocs["floodgate"], allocs["textbook"])
	if allocs["floodgate"] > allocs["textbook"] {
		t.Fatalf("floodgate %.0f allocations per Allow, Script.Run %.0f", allocs["floodgate"], allocs["textbook"])
	}
}
