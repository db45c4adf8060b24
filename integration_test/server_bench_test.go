package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// BenchmarkServe measures decisions through `floodgate serve` (POST
// /v1/users/{user}/allow over keep-alive connections, from rawClient)
// beside GET /healthz (one HTTP loopback round trip), the
// library's own Allow and a PING, in 6 alternating slices each in the same
// run, at 1 and 32 concurrent clients. Same settings on both sides: the
// defaults, local deny cache off, users drawn from 100,000.
//
//	go test ./integration_test -run '^$' -bench '^BenchmarkServe$' -benchtime 6000x
//
// Rates come from alternating slices; at 1 client the p50s come from calls
// interleaved one by one. Metrics: serve/s, allow/s, ping/s and the p50s
// in µs; at 1 client
// added_http_rtt = (serve p50 - Allow p50) / healthz p50, what the server
// adds to a decision in HTTP loopback round trips (target: at most 1), and
// added_ping_rtt the same in Redis PING round trips; at 32 clients
// serve_vs_allow = serve/s / allow/s (target: at least 0.5). The
// batch=100 run sends 100 users per POST /v1/allow-many and compares its
// decisions/s with the library's AllowMany and Allow.
func BenchmarkServe(b *testing.B) {
	rdb := client(b)
	prefix := uniquePrefix(b, rdb)
	proc := startServeProc(b, map[string]string{
		"FLOODGATE_KEY_PREFIX":       prefix,
		"FLOODGATE_LOCAL_CACHE_SIZE": "0",
	})
	defer func() {
		if err := proc.Stop(); err != nil {
			b.Errorf("floodgate serve: %v\n%s", err, proc.Output())
		}
	}()
	url := proc.URL
	// CPU time of the three processes a decision crosses: this one (the
	// HTTP client, or the library), the server and Redis.
	pids := []int{os.Getpid(), proc.cmd.Process.Pid, redisPID(b, rdb)}
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.LocalCacheSize = 0
	lim := newLimiter(b, rdb, cfg)
	ctx := context.Background()
	hc := newRawClient(strings.TrimPrefix(url, "http://"))
	defer hc.close()

	serve := func(rng *rand.Rand) error {
		code, body, err := hc.do("POST", "/v1/users/bench-"+strconv.Itoa(rng.IntN(100_000))+"/allow")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d: %s", code, body)
		}
		return nil
	}
	healthz := func(*rand.Rand) error {
		code, body, err := hc.do("GET", "/healthz")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d: %s", code, body)
		}
		return err
	}
	allow := func(rng *rand.Rand) error {
		_, err := lim.Allow(ctx, "bench-"+strconv.Itoa(rng.IntN(100_000)))
		return err
	}
	ping := func(*rand.Rand) error { return rdb.Ping(ctx).Err() }

	// Batches through POST /v1/allow-many beside the library's AllowMany,
	// 32 clients with 100 users a request.
	b.Run("clients=32/batch=100", func(b *testing.B) {
		const g, batch = 32, 100
		many := func(rng *rand.Rand) error {
			body := make([]byte, 0, 16+batch*16)
			body = append(body, `{"users":[`...)
			for i := 0; i < batch; i++ {
				if i > 0 {
					body = append(body, ',')
				}
				body = append(body, `"bench-`...)
				body = strconv.AppendInt(body, int64(rng.IntN(100_000)), 10)
				body = append(body, '"')
			}
			body = append(body, "]}"...)
			code, answer, err := hc.doBody("POST", "/v1/allow-many", body)
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d: %s", code, answer)
			}
			return err
		}
		libMany := func(rng *rand.Rand) error {
			us := make([]string, batch)
			for i := range us {
				us[i] = "bench-" + strconv.Itoa(rng.IntN(100_000))
			}
			_, err := lim.AllowMany(ctx, us)
			return err
		}
		d := min(max(time.Duration(b.N)*time.Millisecond, 3*time.Second), 30*time.Second)
		const slices = 6
		slice := d / (3 * slices)
		var sum [3]float64
		for i := 0; i < slices; i++ {
			for k, op := range []func(*rand.Rand) error{many, libMany, allow} {
				r, _ := rate(b, g, slice, op)
				sum[k] += r
			}
		}
		serveRate, libRate, allowRate := sum[0]*batch/slices, sum[1]*batch/slices, sum[2]/slices
		b.ReportMetric(serveRate, "serve_decisions/s")
		b.ReportMetric(libRate, "allowmany_decisions/s")
		b.ReportMetric(allowRate, "allow/s")
		b.ReportMetric(serveRate/libRate, "serve_vs_allowmany")
		b.ReportMetric(serveRate/allowRate, "serve_vs_allow")
		b.ReportMetric(0, "ns/op")
	})

	for _, g := range []int{1, 32} {
		b.Run("clients="+strconv.Itoa(g), func(b *testing.B) {
			d := min(max(time.Duration(b.N)*time.Millisecond, 3*time.Second), 30*time.Second)
			ops := []func(*rand.Rand) error{serve, allow, ping, healthz}
			const slices = 6
			slice := d / (4 * slices)
			var sum [4]float64
			var lat [4][]time.Duration
			var cpu [4][3]time.Duration // per op: this process, server, Redis
			var wall [4]time.Duration
			for i := 0; i < slices; i++ {
				for k, op := range ops {
					c0, t0 := cpuTimes(pids), time.Now()
					r, l := rate(b, g, slice, op)
					c1 := cpuTimes(pids)
					wall[k] += time.Since(t0)
					for j := range c0 {
						cpu[k][j] += c1[j] - c0[j]
					}
					sum[k] += r
					lat[k] = append(lat[k], l...)
				}
			}
			if g == 1 {
				// Latencies from calls interleaved one by one, so that each
				// sees the same machine (a process woken from sleep is
				// slower than one in a tight loop).
				lat = interleaved(b, d/2, ops)
			}
			serveRate, allowRate, pingRate := sum[0]/slices, sum[1]/slices, sum[2]/slices
			sp, ap, pp, hp := p50(lat[0]), p50(lat[1]), p50(lat[2]), p50(lat[3])
			b.ReportMetric(serveRate, "serve/s")
			b.ReportMetric(allowRate, "allow/s")
			b.ReportMetric(pingRate, "ping/s")
			b.ReportMetric(float64(sp.Nanoseconds())/1e3, "serve_p50_us")
			b.ReportMetric(float64(ap.Nanoseconds())/1e3, "allow_p50_us")
			b.ReportMetric(float64(pp.Nanoseconds())/1e3, "ping_p50_us")
			b.ReportMetric(float64(hp.Nanoseconds())/1e3, "healthz_p50_us")
			if g == 1 {
				b.ReportMetric(float64(sp-ap)/float64(pp), "added_ping_rtt")
				b.ReportMetric(float64(sp-ap)/float64(hp), "added_http_rtt")
				b.ReportMetric(1, "added_http_rtt_target_max")
			} else {
				b.ReportMetric(serveRate/allowRate, "serve_vs_allow")
				b.ReportMetric(0.5, "serve_vs_allow_target_min")
				// CPU µs per call of each op, summed over the three
				// processes (calls = rate x wall time of its slices).
				var perCall [4]float64
				for k := range ops {
					calls := sum[k] / slices * wall[k].Seconds()
					for j := range cpu[k] {
						perCall[k] += float64(cpu[k][j].Microseconds()) / calls
					}
				}
				if perCall[0] > 0 {
					serveCalls := sum[0] / slices * wall[0].Seconds()
					b.ReportMetric(perCall[0], "serve_cpu_us")
					b.ReportMetric(float64(cpu[0][1].Microseconds())/serveCalls, "serve_server_cpu_us")
					b.ReportMetric(perCall[1], "allow_cpu_us")
					b.ReportMetric(perCall[3], "healthz_cpu_us")
					// A decision over HTTP costs at least an HTTP exchange
					// (healthz) plus a decision from a Go process (Allow):
					// on a CPU-bound machine the rate ratio cannot beat this.
					b.ReportMetric(perCall[1]/(perCall[1]+perCall[3]), "serve_vs_allow_cpu_bound")
				}
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkServeVsBaseline measures this floodgate serve beside another
// build of it (FLOODGATE_BASELINE_BIN, e.g. main's), both on the same
// Redis with the same settings as BenchmarkServe, in 6 alternating slices
// at 32 clients: decisions/s and the server's CPU µs per decision of each.
//
//	git worktree add /tmp/fg-main main && (cd /tmp/fg-main && go build -o /tmp/floodgate-main ./cmd/floodgate)
//	FLOODGATE_BASELINE_BIN=/tmp/floodgate-main go test ./integration_test -run '^$' -bench '^BenchmarkServeVsBaseline$' -benchtime 12000x
func BenchmarkServeVsBaseline(b *testing.B) {
	baseline := os.Getenv("FLOODGATE_BASELINE_BIN")
	if baseline == "" {
		b.Skip("FLOODGATE_BASELINE_BIN names no floodgate binary to compare with")
	}
	rdb := client(b)
	prefix := uniquePrefix(b, rdb)
	env := map[string]string{"FLOODGATE_KEY_PREFIX": prefix, "FLOODGATE_LOCAL_CACHE_SIZE": "0"}
	procs := []*serveProc{startServeProc(b, env), startServeBin(b, baseline, env)}
	var ops []func(*rand.Rand) error
	for _, p := range procs {
		hc := newRawClient(strings.TrimPrefix(p.URL, "http://"))
		defer hc.close()
		ops = append(ops, func(rng *rand.Rand) error {
			code, body, err := hc.do("POST", "/v1/users/bench-"+strconv.Itoa(rng.IntN(100_000))+"/allow")
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d: %s", code, body)
			}
			return err
		})
	}
	const g, slices = 32, 6
	d := min(max(time.Duration(b.N)*time.Millisecond, 3*time.Second), 30*time.Second)
	var calls, cpu [2]float64
	for i := range slices {
		// Each goes first in every other slice: the second sees the users
		// the first just counted (more denials), so a fixed order biases.
		for j := range ops {
			k := (i + j) % len(ops)
			c0, t0 := cpuTimes([]int{procs[k].cmd.Process.Pid}), time.Now()
			r, _ := rate(b, g, d/(2*slices), ops[k])
			c1 := cpuTimes([]int{procs[k].cmd.Process.Pid})
			calls[k] += r * time.Since(t0).Seconds()
			cpu[k] += float64((c1[0] - c0[0]).Microseconds())
		}
	}
	b.ReportMetric(calls[0]/calls[1], "serve_vs_baseline_rate")
	b.ReportMetric(cpu[0]/calls[0], "server_cpu_us")
	b.ReportMetric(cpu[1]/calls[1], "baseline_server_cpu_us")
	b.ReportMetric(0, "ns/op")
}

// interleaved calls each op in turn, rotating which goes first, for about
// d, and returns each op's latencies.
func interleaved(b *testing.B, d time.Duration, ops []func(*rand.Rand) error) [4][]time.Duration {
	var lat [4][]time.Duration
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	stop := time.Now().Add(d)
	for i := 0; time.Now().Before(stop); i++ {
		for j := range ops {
			k := (i + j) % len(ops)
			t0 := time.Now()
			if err := ops[k](rng); err != nil {
				b.Fatal(err)
			}
			lat[k] = append(lat[k], time.Since(t0))
		}
	}
	return lat
}

// redisPID is the process id Redis reports, or 0 (no CPU figures) when
// it is not on this machine's /proc (a REDIS_URL elsewhere).
func redisPID(b *testing.B, rdb *redis.Client) int {
	info, err := rdb.Info(context.Background(), "server").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ := strconv.Atoi(v)
			if _, err := os.Stat("/proc/" + v); err == nil {
				return pid
			}
		}
	}
	return 0
}

// cpuTimes is each process's user+system CPU time from /proc (Linux); a
// process it cannot read counts 0.
func cpuTimes(pids []int) []time.Duration {
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		if pid == 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): utime
		// and stime are the 12th and 13th, in clock ticks (100 a second).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[i] = time.Duration(u+st) * 10 * time.Millisecond
	}
	return out
}
