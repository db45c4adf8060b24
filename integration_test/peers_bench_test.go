package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/scripts/lua"
)

// BenchmarkPeers puts Floodgate's Allow beside the peers a reader would
// otherwise pick, on one redis-server, in one run:
//
//   - floodgate: Limiter.Allow, deny cache off (every call is a Redis
//     decision), concurrent calls coalesced as in production;
//   - textbook: the textbook sorted-set log, one Lua script (textbookLog
//     below): PTTL of a cooldown key beside the log, ZREMRANGEBYSCORE,
//     ZCARD, ZADD with int64 members, PEXPIRE and SET PX of the cooldown;
//   - redis_rate: go-redis/redis_rate v10 Allow (GCRA, one key): PerHour(limit)
//     on the window paths, a burst of 1 per cooldown on the cooldown path;
//   - ping: a PING round trip, the floor of any Redis decision.
//
// Paths: "allowed" (the window holds N requests, none in the cooldown;
// with N = 127, Floodgate's maximum, the oldest has just aged out, so the
// decision also removes it: a user at the limit in steady state),
// "window" (denied: N of N requests in the window) and "cooldown" (denied:
// N requests, the newest 1 s ago, cooldown 10 min). N is 1, 10, 20, 127.
// redis_rate's state is one number whatever N is.
//
// Each contender runs the same number of decisions (3,000 at 1 goroutine,
// 16,000 at 32) in 6 slices, taking turns in a rotating order so that noise
// from elsewhere on a shared machine lands on all; a rate is the median of
// its slices. Each user decides once per slice; on the allowed path every
// slice starts from the same state, copied from a template. Metrics,
// besides each rate: <name>_vs_ping (rate / PING's), floodgate_vs_best
// (Floodgate's rate / the best peer's), <name>_srv_us (server µs per
// decision: INFO commandstats usec of EVALSHA and EVAL / decisions), and at
// 1 goroutine <name>_p50_vs_ping. At the end it prints all cells as one
// Markdown table.
//
//	go test ./integration_test -run '^$' -bench Peers -benchtime 1x
//	go test ./integration_test -run '^$' -bench 'Peers/allowed/entries=20/' -benchtime 1x
func BenchmarkPeers(b *testing.B) {
	rdb := client(b)
	for _, path := range []string{"allowed", "window", "cooldown"} {
		for _, n := range []int{1, 10, 20, 127} {
			for _, g := range []int{1, 32} {
				name := fmt.Sprintf("%s/entries=%d/goroutines=%d", path, n, g)
				b.Run(name, func(b *testing.B) {
					// A cell is measured once, whatever b.N: -benchtime
					// 4000x calls it again, and then gets the same figures.
					res, ok := peerTable.get(name)
					if !ok {
						res = runPeers(b, rdb, path, n, g)
						peerTable.add(name, res)
					}
					reportPeers(b, res, g)
				})
			}
		}
	}
	peerTable.print()
}

// peerResult is one contender's figures in one cell.
type peerResult struct {
	name      string
	rate      float64 // decisions per second, median of the slices
	p50       time.Duration
	srvUS     float64 // server µs per decision
	decisions int64
}

const peerSlices = 6

// contender is one implementation under test.
type contender struct {
	name string
	// reset puts users back into the cell's starting state (untimed).
	reset func(ctx context.Context) error
	op    func(ctx context.Context, user int) error
}

// peerCell is one cell's setup: the state every user starts from.
type peerCell struct {
	path     string
	entries  int
	limit    int
	cooldown time.Duration
	window   time.Duration
	times    []time.Time // accepted requests, ascending
}

func newPeerCell(path string, n int) peerCell {
	c := peerCell{path: path, entries: n, limit: limiter.MaxWindowRequests, cooldown: 10 * time.Second, window: time.Hour}
	now := time.Now()
	spread := func(first, last time.Duration) {
		for i := 0; i < n; i++ {
			at := last // one entry: the newest
			if n > 1 {
				at = first + (last-first)*time.Duration(i)/time.Duration(n-1)
			}
			c.times = append(c.times, now.Add(-at))
		}
	}
	switch path {
	case "allowed":
		spread(50*time.Minute, time.Minute)
		if n == limiter.MaxWindowRequests {
			// The oldest ages out 2 s from now, before the first slice.
			c.times[0] = now.Add(-c.window + 2*time.Second)
		}
	case "window":
		c.limit = n
		spread(50*time.Minute, time.Minute)
	case "cooldown":
		c.cooldown = 10 * time.Minute
		spread(50*time.Minute, time.Second)
	}
	return c
}

func runPeers(b *testing.B, rdb *redis.Client, path string, n, g int) []peerResult {
	ctx := context.Background()
	cell := newPeerCell(path, n)
	users := 3000
	if g > 1 {
		users = 16000
	}
	prefix := uniquePrefix(b, rdb)
	b.Cleanup(func() { deleteKeys(rdb, "rate:"+prefix+"*") })
	cs := peerContenders(ctx, b, rdb, cell, prefix, users)
	if path == "allowed" && n == limiter.MaxWindowRequests {
		time.Sleep(2100 * time.Millisecond) // the oldest entry ages out
	}
	// Warm up: scripts loaded, connections open.
	for _, c := range cs {
		for u := 0; u < 2*g; u++ {
			if err := c.op(ctx, u); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	rates := make([][]float64, len(cs))
	lats := make([][]time.Duration, len(cs))
	decided := make([]int64, len(cs))
	srvUS := inTurn(ctx, b, rdb, cs, path, peerSlices, func(i int, c contender) {
		r, lat := sliceRate(b, g, users, c)
		rates[i] = append(rates[i], r)
		lats[i] = append(lats[i], lat...)
		decided[i] += int64(users)
	})
	out := make([]peerResult, len(cs))
	for i, c := range cs {
		out[i] = peerResult{name: c.name, rate: median(rates[i]), p50: p50(lats[i]), srvUS: srvUS[i] / float64(decided[i]), decisions: decided[i]}
	}
	return out
}

// peerContenders is Floodgate, the textbook script, redis_rate and a
// PING (the floor) on cell's keys under prefix, each reset to its
// starting state.
func peerContenders(ctx context.Context, b *testing.B, rdb *redis.Client, cell peerCell, prefix string, users int) []contender {
	b.Helper()
	cs := []contender{
		floodgateContender(b, rdb, cell, prefix, users),
		textbookContender(b, rdb, cell, prefix, users),
		redisRateContender(b, rdb, cell, prefix, users),
		{name: "ping", op: func(ctx context.Context, _ int) error { return rdb.Ping(ctx).Err() }},
	}
	for _, c := range cs {
		if c.reset != nil {
			if err := c.reset(ctx); err != nil {
				b.Fatalf("%s: setting up: %v", c.name, err)
			}
		}
	}
	return cs
}

// inTurn runs slices rounds of one slice per contender (slice(i, cs[i])),
// in an order rotating each round so that noise from elsewhere on a shared
// machine lands on all; each slice readied by startSlice. It returns the
// server µs each contender's slices took (serverUsec), summed.
func inTurn(ctx context.Context, b *testing.B, rdb *redis.Client, cs []contender, path string, slices int, slice func(i int, c contender)) []float64 {
	b.Helper()
	srv := make([]float64, len(cs))
	for s := 0; s < slices; s++ {
		for k := range cs {
			i := (k + s) % len(cs)
			startSlice(ctx, b, rdb, cs[i], path)
			slice(i, cs[i])
			us, err := serverUsec(ctx, rdb, cs[i].name == "ping")
			if err != nil {
				b.Fatal(err)
			}
			srv[i] += us
		}
	}
	return srv
}

// startSlice readies c for a timed slice: its keys reset when the path
// needs room again (allowed), and the server's command stats zeroed for
// serverUsec.
func startSlice(ctx context.Context, b *testing.B, rdb *redis.Client, c contender, path string) {
	b.Helper()
	if c.reset != nil && path == "allowed" {
		if err := c.reset(ctx); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// sliceRate runs users decisions of c (user indices 0..users-1, each once)
// from g goroutines, and returns decisions per second and the latencies
// seen by the first goroutine.
func sliceRate(b *testing.B, g, users int, c contender) (float64, []time.Duration) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var lat []time.Duration
	var failed atomic.Bool
	start := time.Now()
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for !failed.Load() {
				u := int(next.Add(1)) - 1
				if u >= users {
					return
				}
				t0 := time.Now()
				if err := c.op(ctx, u); err != nil {
					failed.Store(true)
					b.Errorf("%s: %v", c.name, err)
					return
				}
				if w == 0 {
					lat = append(lat, time.Since(t0))
				}
			}
		}(w)
	}
	wg.Wait()
	return float64(users) / time.Since(start).Seconds(), lat
}

// serverUsec reads the server time spent in scripts (or in PING) since the
// last CONFIG RESETSTAT.
func serverUsec(ctx context.Context, rdb *redis.Client, ping bool) (float64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	want := map[string]bool{"cmdstat_evalsha": true, "cmdstat_eval": true}
	if ping {
		want = map[string]bool{"cmdstat_ping": true}
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !want[name] {
			continue
		}
		for _, kv := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, fmt.Errorf("commandstats %q: %v", line, err)
				}
				total += f
			}
		}
	}
	return total, nil
}

// resetFrom is a contender's reset: every user's keys (keys[u][j]) become
// copies of the template's (tmpl[j]), in pipelines. COPY ... REPLACE keeps
// the value and the TTL; a missing template deletes.
func resetFrom(rdb *redis.Client, tmpl []string, keys [][]string) func(context.Context) error {
	return func(ctx context.Context) error {
		const chunk = 1000
		for lo := 0; lo < len(keys); lo += chunk {
			pipe := rdb.Pipeline()
			for _, uk := range keys[lo:min(lo+chunk, len(keys))] {
				for j, k := range uk {
					pipe.Del(ctx, k)
					pipe.Copy(ctx, tmpl[j], k, 0, true)
				}
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

func floodgateContender(b testing.TB, rdb *redis.Client, cell peerCell, prefix string, users int) contender {
	ctx := context.Background()
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix + "fg:"
	cfg.LocalCacheSize = 0
	// A loaded machine must not turn a slow answer into a Degraded one.
	cfg.RedisTimeout = 5 * time.Second
	cfg.UserCooldown = cell.cooldown
	cfg.MaxRequestsPerUserHour = cell.limit
	cfg.UserWindow = cell.window
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Import(ctx, "template", cell.times); err != nil {
		b.Fatal(err)
	}
	tmpl, _ := l.UserKeys("template")
	names := make([]string, users)
	keys := make([][]string, users)
	for u := range names {
		names[u] = "user-" + strconv.Itoa(u)
		keys[u], _ = l.UserKeys(names[u])
	}
	return contender{
		name:  "floodgate",
		reset: resetFrom(rdb, tmpl, keys),
		op: func(ctx context.Context, u int) error {
			d, err := l.Allow(ctx, names[u%users])
			if err == nil && (d.Allowed != (cell.path == "allowed") || d.Degraded) {
				err = fmt.Errorf("user %d: %+v on the %s path", u, d, cell.path)
			}
			return err
		},
	}
}

// textbookLog is the sliding-window log as tutorials write it: a sorted
// set of request times (scores in ms, int64 members: TIME in µs) and a
// cooldown key beside it. Reply: allowed, reason, retry ms.
var textbookLog = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window, cooldown = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if cooldown > 0 then
  local cd = redis.call('PTTL', KEYS[2])
  if cd > 0 then return {0, 1, cd} end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, 2, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('PEXPIRE', KEYS[1], window)
if cooldown > 0 then redis.call('SET', KEYS[2], '1', 'PX', cooldown) end
return {1, 0, 0}
`)

func textbookContender(b testing.TB, rdb *redis.Client, cell peerCell, prefix string, users int) contender {
	ctx := context.Background()
	key := func(u string) []string {
		return []string{prefix + "tb:{" + u + "}:log", prefix + "tb:{" + u + "}:cd"}
	}
	tmpl := key("template")
	var zs []redis.Z
	for i, at := range cell.times {
		zs = append(zs, redis.Z{Score: float64(at.UnixMilli()), Member: at.UnixMicro() + int64(i)})
	}
	now := time.Now()
	newest := cell.times[len(cell.times)-1]
	pipe := rdb.Pipeline()
	pipe.ZAdd(ctx, tmpl[0], zs...)
	pipe.PExpire(ctx, tmpl[0], newest.Add(cell.window).Sub(now))
	if cd := newest.Add(cell.cooldown).Sub(now); cd > 0 {
		pipe.Set(ctx, tmpl[1], "1", cd)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	keys := make([][]string, users)
	for u := range keys {
		keys[u] = key("user-" + strconv.Itoa(u))
	}
	args := []any{cell.limit, cell.window.Milliseconds(), cell.cooldown.Milliseconds()}
	return contender{
		name:  "textbook",
		reset: resetFrom(rdb, tmpl, keys),
		op: func(ctx context.Context, u int) error {
			r, err := textbookLog.Run(ctx, rdb, keys[u%users], args...).Int64Slice()
			if err == nil && (r[0] == 1) != (cell.path == "allowed") {
				err = fmt.Errorf("user %d: %v on the %s path", u, r, cell.path)
			}
			return err
		},
	}
}

func redisRateContender(b testing.TB, rdb *redis.Client, cell peerCell, prefix string, users int) contender {
	ctx := context.Background()
	rl := redis_rate.NewLimiter(rdb)
	limit := redis_rate.PerHour(cell.limit)
	prior := min(cell.entries, cell.limit-1) // allowed: room for one more
	if cell.path == "window" {
		prior = cell.entries
	}
	if cell.path == "cooldown" {
		limit = redis_rate.Limit{Rate: 1, Period: cell.cooldown, Burst: 1}
		prior = 1
	}
	if _, err := rl.AllowN(ctx, prefix+"rr:template", limit, prior); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, users)
	stored := make([][]string, users) // redis_rate's own prefix
	for u := range keys {
		keys[u] = prefix + "rr:user-" + strconv.Itoa(u)
		stored[u] = []string{"rate:" + keys[u]}
	}
	return contender{
		name:  "redis_rate",
		reset: resetFrom(rdb, []string{"rate:" + prefix + "rr:template"}, stored),
		op: func(ctx context.Context, u int) error {
			r, err := rl.Allow(ctx, keys[u%users], limit)
			if err == nil && (r.Allowed == 1) != (cell.path == "allowed") {
				err = fmt.Errorf("user %d: %+v on the %s path", u, r, cell.path)
			}
			return err
		},
	}
}

// bestPeer is the best of res's peers (every contender but Floodgate,
// first, and PING, last): the first r for which no other is better(·, r).
func bestPeer(res []peerResult, better func(a, b peerResult) bool) peerResult {
	best := res[1]
	for _, r := range res[2 : len(res)-1] {
		if better(r, best) {
			best = r
		}
	}
	return best
}

// Orders for bestPeer.
func fasterRate(a, b peerResult) bool { return a.rate > b.rate }
func lowerP50(a, b peerResult) bool   { return a.p50 < b.p50 }
func lowerSrv(a, b peerResult) bool   { return a.srvUS < b.srvUS }

func reportPeers(b *testing.B, res []peerResult, g int) {
	ping := res[len(res)-1]
	for _, r := range res {
		b.ReportMetric(r.rate, r.name+"/s")
		if r.name == "ping" {
			continue
		}
		b.ReportMetric(r.rate/ping.rate, r.name+"_vs_ping")
		b.ReportMetric(r.srvUS, r.name+"_srv_us")
		if g == 1 && ping.p50 > 0 {
			b.ReportMetric(float64(r.p50)/float64(ping.p50), r.name+"_p50_vs_ping")
		}
	}
	b.ReportMetric(res[0].rate/bestPeer(res, fasterRate).rate, "floodgate_vs_best")
	b.ReportMetric(0, "ns/op")
}

// peerTable collects every cell for one summary at the end.
var peerTable peerRows

type peerRows struct {
	mu      sync.Mutex
	names   []string
	rows    map[string]string
	results map[string][]peerResult
}

func (t *peerRows) get(name string) ([]peerResult, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.results[name]
	return r, ok
}

func (t *peerRows) add(name string, res []peerResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rows == nil {
		t.rows = map[string]string{}
		t.results = map[string][]peerResult{}
	}
	t.results[name] = res
	ping := res[len(res)-1]
	best := bestPeer(res, fasterRate)
	p50s := "–"
	if strings.HasSuffix(name, "goroutines=1") && ping.p50 > 0 {
		p50s = fmt.Sprintf("%.2f / %.2f / %.2f", float64(res[0].p50)/float64(ping.p50),
			float64(res[1].p50)/float64(ping.p50), float64(res[2].p50)/float64(ping.p50))
	}
	row := fmt.Sprintf("| %s | **%.2fx** %s | %.2fx | %.2fx | %.2fx | %s | %.1f | %.1f | %.1f | %.0fk/s |",
		strings.ReplaceAll(name, "/", ", "), res[0].rate/best.rate, best.name,
		res[0].rate/ping.rate, res[1].rate/ping.rate, res[2].rate/ping.rate, p50s,
		res[0].srvUS, res[1].srvUS, res[2].srvUS, ping.rate/1000)
	if _, ok := t.rows[name]; !ok {
		t.names = append(t.names, name)
	}
	t.rows[name] = row
}

func (t *peerRows) print() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.names) == 0 {
		return
	}
	var rows []string
	for _, n := range t.names {
		rows = append(rows, t.rows[n])
	}
	fmt.Printf("\n| path, entries, goroutines | Floodgate / best peer (best peer) | Floodgate / PING | textbook / PING | redis_rate / PING | p50 / PING p50: Floodgate / textbook / redis_rate | server µs per decision: Floodgate | textbook | redis_rate | PING rate |\n|---|---|---|---|---|---|---|---|---|---|\n%s",
		strings.Join(rows, "\n")+"\n\n")
}

// BenchmarkPeersServerTime isolates the server's side of BenchmarkPeers:
// the same cells, each decision sent as its own EVALSHA from one pipelined
// connection (so no client or scheduling time is counted), and for
// Floodgate also 16 users per call, as its coalescer sends them under
// load, and user_allow_one.lua, which a lone Allow runs. It reports µs of
// INFO commandstats (EVALSHA) per decision, the
// least of 5 rounds of 3,000 decisions.
//
//	go test ./integration_test -run '^$' -bench PeersServerTime -benchtime 1x
func BenchmarkPeersServerTime(b *testing.B) {
	rdb := client(b)
	ctx := context.Background()
	userAllow := redis.NewScript(lua.Source("user_allow.lua"))
	if err := userAllow.Load(ctx, rdb).Err(); err != nil {
		b.Fatal(err)
	}
	userAllowOne := redis.NewScript(lua.Source("user_allow_one.lua"))
	if err := userAllowOne.Load(ctx, rdb).Err(); err != nil {
		b.Fatal(err)
	}
	if err := textbookLog.Load(ctx, rdb).Err(); err != nil {
		b.Fatal(err)
	}
	const users, rounds = 3000, 5
	var rows []string
	srvCache := map[string]map[string]float64{}
	for _, path := range []string{"allowed", "window", "cooldown"} {
		for _, n := range []int{1, 10, 20, 127} {
			name := fmt.Sprintf("%s/entries=%d", path, n)
			b.Run(name, func(b *testing.B) {
				if m, ok := srvCache[name]; ok { // measured once, whatever b.N
					for unit, v := range m {
						b.ReportMetric(v, unit)
					}
					return
				}
				cell := newPeerCell(path, n)
				prefix := uniquePrefix(b, rdb)
				fg := floodgateContender(b, rdb, cell, prefix, users)
				tb := textbookContender(b, rdb, cell, prefix, users)
				if path == "allowed" && n == limiter.MaxWindowRequests {
					time.Sleep(2100 * time.Millisecond) // the oldest entry ages out
				}
				cfg := limiter.DefaultConfig()
				cfg.KeyPrefix = prefix + "fg:"
				l, err := limiter.New(rdb, cfg)
				if err != nil {
					b.Fatal(err)
				}
				fgKeys := make([]string, users)
				for u := range fgKeys {
					k, _ := l.UserKeys("user-" + strconv.Itoa(u))
					fgKeys[u] = k[0]
				}
				fgArgs := []any{cell.limit, cell.window.Milliseconds(), cell.cooldown.Milliseconds()}
				send := func(batch int) func(pipe redis.Pipeliner, lo, hi int) {
					return func(pipe redis.Pipeliner, lo, hi int) {
						for u := lo; u < hi; u += batch {
							userAllow.EvalSha(ctx, pipe, fgKeys[u:min(u+batch, hi)], fgArgs...)
						}
					}
				}
				oneArgs := []any{strconv.Itoa(cell.limit), strconv.FormatInt(cell.window.Milliseconds(), 10),
					strconv.FormatInt(cell.cooldown.Milliseconds(), 10), strconv.Itoa(-cell.limit - 1)}
				sendOne := func(pipe redis.Pipeliner, lo, hi int) {
					for u := lo; u < hi; u++ {
						userAllowOne.EvalSha(ctx, pipe, fgKeys[u:u+1], oneArgs...)
					}
				}
				textbook := func(pipe redis.Pipeliner, lo, hi int) {
					for u := lo; u < hi; u++ {
						k := "user-" + strconv.Itoa(u)
						textbookLog.EvalSha(ctx, pipe, []string{prefix + "tb:{" + k + "}:log", prefix + "tb:{" + k + "}:cd"}, fgArgs...)
					}
				}
				measure := func(c contender, send func(redis.Pipeliner, int, int)) float64 {
					best := 0.0
					for r := 0; r < rounds; r++ {
						if err := c.reset(ctx); err != nil {
							b.Fatal(err)
						}
						if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
							b.Fatal(err)
						}
						for lo := 0; lo < users; lo += 200 {
							pipe := rdb.Pipeline()
							send(pipe, lo, min(lo+200, users))
							if _, err := pipe.Exec(ctx); err != nil {
								b.Fatal(err)
							}
						}
						us, err := serverUsec(ctx, rdb, false)
						if err != nil {
							b.Fatal(err)
						}
						if per := us / users; r == 0 || per < best {
							best = per
						}
					}
					return best
				}
				one, sixteen, text, lone := measure(fg, send(1)), measure(fg, send(16)), measure(tb, textbook), measure(fg, sendOne)
				srvCache[name] = map[string]float64{"floodgate_srv_us": one, "floodgate16_srv_us": sixteen, "textbook_srv_us": text, "floodgate_one_srv_us": lone, "ns/op": 0}
				for unit, v := range srvCache[name] {
					b.ReportMetric(v, unit)
				}
				rows = append(rows, fmt.Sprintf("| %s, %d | %.1f | %.1f | %.1f | %.1f |", path, n, lone, one, sixteen, text))
			})
		}
	}
	fmt.Printf("\n| path, entries | Floodgate, user_allow_one.lua | Floodgate, user_allow.lua, 1 user per call | 16 users per call | textbook log |\n|---|---|---|---|---|\n%s\n\n", strings.Join(rows, "\n"))
}

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
