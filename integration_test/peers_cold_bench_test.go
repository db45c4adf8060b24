package integration_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// BenchmarkPeersCold is BenchmarkPeers at one goroutine the way a chat bot
// decides: one decision at a time, with other work in between, so neither
// the client's nor the server's caches are warm when it comes. Modes, each
// run before every decision (untimed):
//
//   - warm: nothing (BenchmarkPeers' tight loop, for reference);
//   - sleep: a 50 µs sleep;
//   - ping+other: a PING, then another client's script call (EVALSHA_RO of
//     a script reading a 100-entry sorted set, on its own connection);
//   - evict: other CPU work touching 4 MB (one byte per 64-byte line), which
//     evicts the client's caches and, on a small machine, the server's.
//
// Contenders and paths as in BenchmarkPeers (Floodgate with the deny cache
// off, the textbook log through go-redis Script.Run, redis_rate, PING), on
// windows holding 20 requests, 2,000 users; each contender decides every
// user once per slice, 4 slices in a rotating order. Per contender: p50 of
// the decision alone (the work before it not timed) and server µs per
// decision (INFO commandstats usec of EVALSHA and EVAL, reset before each
// slice; the other client's EVALSHA_RO is counted apart); Floodgate's
// p50 and server µs over the best peer's. It prints one Markdown table.
//
//	go test ./integration_test -run '^$' -bench PeersCold -benchtime 1x
//	go test ./integration_test -run '^$' -bench 'PeersCold/evict/' -benchtime 1x
func BenchmarkPeersCold(b *testing.B) {
	rdb := client(b)
	other := client(b)
	var rows []string
	done := map[string][]peerResult{}
	for _, mode := range []string{"warm", "sleep", "ping+other", "evict"} {
		for _, path := range []string{"allowed", "window", "cooldown"} {
			name := mode + "/" + path
			b.Run(name, func(b *testing.B) {
				res, ok := done[name]
				if !ok {
					res = runCold(b, rdb, other, mode, path)
					done[name] = res
					rows = append(rows, coldRow(mode, path, res))
				}
				fg := res[0]
				b.ReportMetric(float64(fg.p50)/float64(bestPeer(res, lowerP50).p50), "floodgate_p50_vs_best")
				b.ReportMetric(fg.srvUS/res[1].srvUS, "floodgate_srv_vs_textbook")
				b.ReportMetric(fg.srvUS/bestPeer(res, lowerSrv).srvUS, "floodgate_srv_vs_best")
				for _, r := range res {
					b.ReportMetric(float64(r.p50.Nanoseconds())/1000, r.name+"_p50_us")
					if r.name != "ping" {
						b.ReportMetric(r.srvUS, r.name+"_srv_us")
					}
				}
				b.ReportMetric(0, "ns/op")
			})
		}
	}
	if len(rows) > 0 {
		fmt.Printf("\n| before each decision | path | p50 µs: Floodgate / textbook / redis_rate / PING | Floodgate p50 / best peer's | server µs per decision: Floodgate / textbook / redis_rate |\n|---|---|---|---|---|\n%s\n\n", strings.Join(rows, "\n"))
	}
}

func coldRow(mode, path string, res []peerResult) string {
	fg, tb, rr, ping := res[0], res[1], res[2], res[3]
	best := bestPeer(res, lowerP50)
	us := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Nanoseconds())/1000) }
	return fmt.Sprintf("| %s | %s | %s / %s / %s / %s | **%.2fx** (%s) | %.1f / %.1f / %.1f |",
		mode, path, us(fg.p50), us(tb.p50), us(rr.p50), us(ping.p50),
		float64(fg.p50)/float64(best.p50), best.name, fg.srvUS, tb.srvUS, rr.srvUS)
}

// coldOther is the other client's script: a read of a sorted set, as a
// neighbour's job on the same Redis might make.
var coldOther = redis.NewScript(`return #redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')`)

// evictBuf is the other work's memory: 4 MB, larger than this machine's
// caches per core.
var evictBuf = make([]byte, 4<<20)

func evictCaches() {
	for i := 0; i < len(evictBuf); i += 64 {
		evictBuf[i]++
	}
}

func runCold(b *testing.B, rdb, other *redis.Client, mode, path string) []peerResult {
	ctx := context.Background()
	const users, slices = 2000, 4
	cell := newPeerCell(path, 20)
	prefix := uniquePrefix(b, rdb)
	b.Cleanup(func() { deleteKeys(rdb, "rate:"+prefix+"*") })
	otherKey := prefix + "other"
	var zs []redis.Z
	for i := 0; i < 100; i++ {
		zs = append(zs, redis.Z{Score: float64(i), Member: "m" + strconv.Itoa(i)})
	}
	if err := other.ZAdd(ctx, otherKey, zs...).Err(); err != nil {
		b.Fatal(err)
	}
	cs := peerContenders(ctx, b, rdb, cell, prefix, users)
	var before func() error
	switch mode {
	case "warm":
		before = func() error { return nil }
	case "sleep":
		before = func() error { time.Sleep(50 * time.Microsecond); return nil }
	case "ping+other":
		before = func() error {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return err
			}
			return coldOther.RunRO(ctx, other, []string{otherKey}).Err()
		}
	case "evict":
		before = func() error { evictCaches(); return nil }
	}
	for _, c := range cs {
		for u := 0; u < 2; u++ { // scripts loaded, connections open
			if err := c.op(ctx, users-1-u); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	lats := make([][]time.Duration, len(cs))
	srv := inTurn(ctx, b, rdb, cs, path, slices, func(i int, c contender) {
		for u := 0; u < users; u++ {
			if err := before(); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := c.op(ctx, u); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			lats[i] = append(lats[i], time.Since(t0))
		}
	})
	out := make([]peerResult, len(cs))
	for i, c := range cs {
		n := float64(slices * users)
		if c.name == "ping" && mode == "ping+other" {
			n *= 2 // the PING before each decision counts too
		}
		out[i] = peerResult{name: c.name, p50: p50(lats[i]), srvUS: srv[i] / n, decisions: int64(slices * users)}
	}
	return out
}

// BenchmarkAllowAllocs counts the client's allocations per decision
// (-benchmem): Floodgate's Allow (deny cache off) beside go-redis
// Script.Run of the textbook log, on a cooldown denial (nothing written,
// so every iteration is the same decision), and the CPU time this process
// (the client: redis-server is another) spends per decision, user and
// system.
//
//	go test ./integration_test -run '^$' -bench AllowAllocs -benchmem
func BenchmarkAllowAllocs(b *testing.B) {
	rdb := client(b)
	cell := newPeerCell("cooldown", 20)
	prefix := uniquePrefix(b, rdb)
	const users = 100
	cs := []contender{
		floodgateContender(b, rdb, cell, prefix, users),
		textbookContender(b, rdb, cell, prefix, users),
	}
	ctx := context.Background()
	for _, c := range cs {
		if err := c.reset(ctx); err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			if err := c.op(ctx, 0); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				if err := c.op(ctx, i%users); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/1000/float64(b.N), "client_cpu_us/op")
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
