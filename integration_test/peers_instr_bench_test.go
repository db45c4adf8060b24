package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/scripts/lua"
)

// BenchmarkPeersInstructions counts what one decision costs the server in
// instructions, which unlike µs on a shared machine do not depend on the
// load: a redis-server of its own runs under valgrind's callgrind, which
// counts only inside instrFunc (the script's run, its redis.calls and its
// reply; not reading the command or writing the answer, the same for any
// EVALSHA), and dumps its counts at every ECHO, so that each cell is read
// apart. Cells: BenchmarkPeersCold's paths on windows holding 20 requests;
// per cell 50 decisions to warm up, then instrCalls counted, one user
// each, every user starting from the cell's state. Contenders:
// Floodgate's lone Allow (user_allow_one.lua, through Limiter.Allow as a
// bot calls it), user_allow.lua with one key (the batch script), the
// textbook log (EVALSHA), and readsFloor, the reads an exact cooldown
// denial needs from Floodgate's layout with nothing around them: the least
// any script can spend on that path. Metrics: <name>_instr per decision; it prints
// one Markdown table. With FLOODGATE_CALLGRIND_DIR set, the dumps stay
// there (callgrind.out.N: two per contender, warm-up then counted, in the
// table's order), for callgrind_annotate to say where the instructions go.
//
//	go test ./integration_test -run '^$' -bench PeersInstructions -benchtime 1x
func BenchmarkPeersInstructions(b *testing.B) {
	valgrind := needTool(b, "valgrind", "valgrind")
	needRedisServer(b)
	rdb, dumps := callgrindRedis(b, valgrind)
	ctx := context.Background()
	batch := redis.NewScript(lua.Source("user_allow.lua"))
	var rows []string
	floor := redis.NewScript(readsFloor)
	done := map[string][4]float64{}
	for _, path := range []string{"allowed", "window", "cooldown"} {
		b.Run(path, func(b *testing.B) {
			res, ok := done[path]
			if !ok {
				cell := newPeerCell(path, 20)
				prefix := uniquePrefix(b, rdb)
				users := instrWarm + instrCalls
				fg := floodgateContender(b, rdb, cell, prefix, users)
				tb := textbookContender(b, rdb, cell, prefix, users)
				cfg := limiter.DefaultConfig()
				cfg.KeyPrefix = prefix + "fg:"
				l, err := limiter.New(rdb, cfg)
				if err != nil {
					b.Fatal(err)
				}
				args := []any{cell.limit, cell.window.Milliseconds(), cell.cooldown.Milliseconds()}
				one := contender{name: "user_allow.lua", reset: fg.reset, op: func(ctx context.Context, u int) error {
					keys, _ := l.UserKeys("user-" + strconv.Itoa(u))
					return batch.Run(ctx, rdb, keys[:1], args...).Err()
				}}
				least := contender{name: "floor", reset: fg.reset, op: func(ctx context.Context, u int) error {
					keys, _ := l.UserKeys("user-" + strconv.Itoa(u))
					return floor.Run(ctx, rdb, keys[:1], args...).Err()
				}}
				for i, c := range []contender{fg, one, tb, least} {
					res[i] = countInstructions(ctx, b, rdb, dumps, c)
				}
				done[path] = res
				rows = append(rows, fmt.Sprintf("| %s | %.0f | %.0f | %.0f | %.2fx | %.0f |", path, res[0], res[1], res[2], res[0]/res[2], res[3]))
			}
			b.ReportMetric(res[0], "floodgate_instr")
			b.ReportMetric(res[1], "user_allow_1key_instr")
			b.ReportMetric(res[2], "textbook_instr")
			b.ReportMetric(res[3], "reads_floor_instr")
			b.ReportMetric(res[0]/res[2], "floodgate_vs_textbook")
			b.ReportMetric(0, "ns/op")
		})
	}
	fmt.Printf("\n| path (20 entries) | Floodgate, user_allow_one.lua | user_allow.lua, 1 key | textbook log | Floodgate / textbook | reads alone (floor) |\n|---|---|---|---|---|---|\n%s\n\n",
		strings.Join(rows, "\n"))
}

// readsFloor is what an exact cooldown denial must read from Floodgate's
// layout (one key per user, the cooldown in the window's newest entry):
// the clock, the newest entry and the base with their scores, and the
// count for Remaining, each number converted once, with no check around
// them. Not a decision (it answers as a cooldown denial on every path);
// the floor under user_allow_one.lua's cooldown path.
const readsFloor = `
local t = redis.call('TIME')
local z = redis.call('ZRANGE', KEYS[1], '-2', '-1', 'WITHSCORES')
local n = redis.call('ZCARD', KEYS[1])
local now = t[1] * 1000 + t[2] / 1000
local newest = z[4] + z[2]
return {0, 1, ARGV[1] - n, newest + ARGV[3] - now, newest + ARGV[2] - now}
`

const (
	// instrFunc is the redis-server function callgrind counts inside:
	// EVALSHA's own, which runs the script.
	instrFunc             = "evalShaCommand"
	instrWarm, instrCalls = 50, 500
)

// callgrindRedis starts redis-server under callgrind, counting inside
// instrFunc only and dumping at every ECHO into files dumps returns (the
// newest last).
func callgrindRedis(b *testing.B, valgrind string) (*redis.Client, func() []string) {
	b.Helper()
	port, err := redisproc.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	dir := os.Getenv("FLOODGATE_CALLGRIND_DIR") // to read the dumps with callgrind_annotate
	if dir == "" {
		dir = b.TempDir()
	}
	out := filepath.Join(dir, "callgrind.out")
	cmd := exec.Command(valgrind, "--tool=callgrind", "--collect-atstart=no", "--toggle-collect="+instrFunc,
		"--dump-before=echoCommand", "--callgrind-out-file="+out,
		"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	cmd.Dir = dir
	var log redisproc.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	b.Cleanup(func() { rdb.Close() })
	for deadline := time.Now().Add(2 * time.Minute); rdb.Ping(context.Background()).Err() != nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("redis-server under callgrind did not answer: %s", log.String())
		}
	}
	return rdb, func() []string {
		m, _ := filepath.Glob(out + ".*")
		// callgrind.out.1, .2, ...: numeric order.
		n := func(p string) int { i, _ := strconv.Atoi(p[strings.LastIndexByte(p, '.')+1:]); return i }
		for i := 1; i < len(m); i++ {
			for j := i; j > 0 && n(m[j]) < n(m[j-1]); j-- {
				m[j], m[j-1] = m[j-1], m[j]
			}
		}
		return m
	}
}

// countInstructions runs c's decisions for instrWarm users, then for
// instrCalls more, and returns instructions per counted decision.
func countInstructions(ctx context.Context, b *testing.B, rdb *redis.Client, dumps func() []string, c contender) float64 {
	b.Helper()
	if err := c.reset(ctx); err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, r := range [][2]int{{0, instrWarm}, {instrWarm, instrWarm + instrCalls}} {
		for u := r[0]; u < r[1]; u++ {
			if err := c.op(ctx, u); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
		}
		if err := rdb.Echo(ctx, "dump").Err(); err != nil {
			b.Fatal(err)
		}
		d := dumps()
		text, err := os.ReadFile(d[len(d)-1])
		if err != nil {
			b.Fatal(err)
		}
		_, v, ok := strings.Cut(string(text), "\ntotals: ")
		if !ok {
			b.Fatalf("%s: no totals in %s", c.name, d[len(d)-1])
		}
		v, _, _ = strings.Cut(v, "\n")
		if total, err = strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
			b.Fatal(err)
		}
	}
	return float64(total) / instrCalls
}
