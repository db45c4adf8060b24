package integration_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

func init() {
	clusterTests = append(clusterTests, clusterTest{name: "EvictionEveryMaster", run: testClusterEvictionEveryMaster})
}

// startMaxmemory starts a redis-server with maxmemory 4mb and policy and
// returns a client for it.
func startMaxmemory(t *testing.T, policy string) *redis.Client {
	t.Helper()
	return privateClient(t, "--maxmemory", "4mb", "--maxmemory-policy", policy)
}

// captureSlog routes log/slog's default logger to a buffer for the test.
func captureSlog(t *testing.T) *redisproc.SyncBuffer {
	t.Helper()
	b := &redisproc.SyncBuffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(b, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return b
}

// metricsConfig is the default Config observed by floodgate's metrics, on
// a registry of the test's own.
func metricsConfig(t *testing.T) (limiter.Config, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	obs, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := limiter.DefaultConfig()
	cfg.Observer = obs
	return cfg, reg
}

// waitEvictionRisk waits for New's background check.
func waitEvictionRisk(t *testing.T, l *limiter.Limiter) limiter.Eviction {
	t.Helper()
	deadline := time.Now().Add(l.Config().RedisTimeout + 2*time.Second)
	for {
		e, err := l.EvictionRisk()
		if !errors.Is(err, limiter.ErrEvictionUnchecked) {
			if err != nil {
				t.Fatalf("New's eviction check: %v", err)
			}
			return e
		}
		if time.Now().After(deadline) {
			t.Fatal("New's eviction check did not finish within RedisTimeout + 2 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEvictionWarning: with maxmemory 4mb, New finds by itself that
// volatile-lru and allkeys-lru can evict Floodgate's keys and says so
// loudly (a log line with the fix, the metric at 1); noeviction gives
// neither. Users admitted on a volatile-lru Redis show up in
// floodgate_redis_evicted_keys_total, and many are admitted again inside
// their cooldown: what the warning is about.
func TestEvictionWarning(t *testing.T) {
	for _, policy := range []string{"volatile-lru", "allkeys-lru", "noeviction"} {
		t.Run(policy, func(t *testing.T) {
			rdb := startMaxmemory(t, policy)
			logs := captureSlog(t)
			cfg, reg := metricsConfig(t)
			cfg.RedisTimeout = 5 * time.Second
			cfg.LocalCacheSize = 0
			l, err := limiter.New(rdb, cfg)
			if err != nil {
				t.Fatal(err)
			}
			e := waitEvictionRisk(t, l)
			unsafe := policy != "noeviction"
			if e.Policy != policy || e.MaxMemory != 4<<20 || e.Unsafe != unsafe || e.Masters != 1 {
				t.Fatalf("EvictionRisk = %+v, want policy %s, 4 MiB, Unsafe %v", e, policy, unsafe)
			}
			gauge := testutil.ToFloat64(gaugeOf(t, reg, "floodgate_redis_eviction_unsafe"))
			out := logs.String()
			if unsafe {
				if !strings.Contains(out, "level=WARN") || !strings.Contains(out, policy) || !strings.Contains(out, "CONFIG SET maxmemory-policy noeviction") {
					t.Errorf("no warning with the fix in the log: %q", out)
				}
				if gauge != 1 {
					t.Errorf("floodgate_redis_eviction_unsafe = %v, want 1", gauge)
				}
			} else {
				if out != "" {
					t.Errorf("noeviction logged %q, want nothing", out)
				}
				if gauge != 0 {
					t.Errorf("floodgate_redis_eviction_unsafe = %v, want 0", gauge)
				}
			}
			if policy != "volatile-lru" {
				return
			}
			// Fill: 30,000 users allowed once, then again at once.
			ctx := context.Background()
			const users = 30_000
			admit := func() int {
				n := 0
				batch := make([]string, 0, 500)
				for i := 0; i < users; i++ {
					batch = append(batch, fmt.Sprintf("user_%05d", i))
					if len(batch) == cap(batch) || i == users-1 {
						ds, err := l.AllowMany(ctx, batch)
						if err != nil {
							t.Fatal(err)
						}
						for _, d := range ds {
							if d.Allowed {
								n++
							}
						}
						batch = batch[:0]
					}
				}
				return n
			}
			admit()
			again := admit()
			e, err = l.CheckEviction(ctx)
			if err != nil {
				t.Fatal(err)
			}
			evicted := testutil.ToFloat64(gaugeOf(t, reg, "floodgate_redis_evicted_keys_total"))
			t.Logf("volatile-lru, 4 MiB: %d of %d users admitted again inside their cooldown; %d keys evicted", again, users, e.EvictedKeys)
			if e.EvictedKeys == 0 || evicted != float64(e.EvictedKeys) {
				t.Errorf("EvictedKeys %d, floodgate_redis_evicted_keys_total %v: want the same, above 0", e.EvictedKeys, evicted)
			}
			if again == 0 {
				t.Errorf("no user was admitted again: did Redis evict nothing? (EvictedKeys %d)", e.EvictedKeys)
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
				t.Errorf("the warning was logged %d times, want once while the policy stays the same", n)
			}
		})
	}
}

// gaugeOf returns the collector holding the one series name in reg.
func gaugeOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
		g.Set(v)
		return g
	}
	t.Fatalf("%s: not one series in the registry", name)
	return nil
}

// fillRedis writes filler keys (not Floodgate's) until Redis answers
// OOM, as a noeviction Redis does when full.
func fillRedis(t *testing.T, rdb *redis.Client) {
	t.Helper()
	ctx := context.Background()
	val := strings.Repeat("x", 16<<10)
	for i := 0; ; i++ {
		err := rdb.Set(ctx, fmt.Sprintf("filler:%d", i), val, 0).Err()
		if limiter.IsOutOfMemory(err) {
			return
		}
		if err != nil {
			t.Fatalf("filling Redis: %v", err)
		}
		if i > 10_000 {
			t.Fatal("Redis never answered OOM: is maxmemory set?")
		}
	}
}

// TestOutOfMemoryFollowsFailureMode: on a full noeviction Redis every
// policy's calls follow its FailureMode, Degraded, with no error per call;
// the metrics count them (degraded decisions, OOM errors).
func TestOutOfMemoryFollowsFailureMode(t *testing.T) {
	rdb := startMaxmemory(t, "noeviction")
	fillRedis(t, rdb)
	ctx := context.Background()
	for _, mode := range []limiter.FailureMode{limiter.FailLocal, limiter.FailOpen, limiter.FailClosed} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, reg := metricsConfig(t)
			cfg.LocalCacheSize = 0
			cfg.OnRedisError, cfg.BucketOnRedisError, cfg.SlotsOnRedisError, cfg.BackoffOnRedisError = mode, mode, mode, mode
			cfg.KeyPrefix = "fg" + mode.String()
			l, err := limiter.New(rdb, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 20; i++ {
				d, err := l.Allow(ctx, fmt.Sprintf("u%d", i))
				if err != nil {
					t.Fatalf("Allow %d on a full Redis: %v, want no error", i, err)
				}
				if !d.Degraded || d.Allowed != (mode != limiter.FailClosed) {
					t.Fatalf("Allow %d on a full Redis (%v): %+v", i, mode, d)
				}
				if mode == limiter.FailClosed && d.Reason != limiter.ReasonRedisDown {
					t.Fatalf("FailClosed on a full Redis: reason %v, want ReasonRedisDown", d.Reason)
				}
			}
			ds, err := l.AllowMany(ctx, []string{"m1", "m2", "m3"})
			if err != nil {
				t.Fatalf("AllowMany on a full Redis: %v", err)
			}
			for i, d := range ds {
				if !d.Degraded {
					t.Errorf("AllowMany[%d] on a full Redis: %+v, want Degraded", i, d)
				}
			}
			b, err := l.Bucket("api", limiter.BucketSettings{PerSecond: 1, Burst: 1})
			if err != nil {
				t.Fatal(err)
			}
			if d, err := b.Allow(ctx); err != nil || !d.Degraded {
				t.Errorf("Bucket.Allow on a full Redis: %+v, %v; want Degraded, nil", d, err)
			}
			degraded, oom := 0.0, 0.0
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					switch mf.GetName() {
					case "floodgate_degraded_decisions_total":
						degraded += m.GetCounter().GetValue()
					case "floodgate_redis_errors_total":
						for _, lp := range m.GetLabel() {
							if lp.GetName() == "kind" && lp.GetValue() == "oom" {
								oom += m.GetCounter().GetValue()
							}
						}
					}
				}
			}
			if degraded < 24 || oom < 1 {
				t.Errorf("metrics: %v degraded decisions (want 24), %v OOM errors (want at least 1)", degraded, oom)
			}
		})
	}
}

// TestEvictionCheckWithoutINFO: an ACL user without INFO gets the policy
// from CONFIG GET when granted, else an error naming the grant.
func TestEvictionCheckWithoutINFO(t *testing.T) {
	ctx := context.Background()
	srv := startRedis(t, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { admin.Close() })
	for _, rule := range [][]any{
		{"acl", "setuser", "noinfo", "on", ">pw", "~*", "-@all", "+config|get"},
		{"acl", "setuser", "nothing", "on", ">pw", "~*", "-@all"},
	} {
		if err := admin.Do(ctx, rule...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	as := func(user string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: user, Password: "pw"})
		t.Cleanup(func() { c.Close() })
		return c
	}
	e, err := limiter.CheckEviction(ctx, as("noinfo"))
	if err != nil || e.Policy != "allkeys-lru" || e.MaxMemory != 4<<20 || !e.Unsafe {
		t.Errorf("CheckEviction with CONFIG GET only: %+v, %v", e, err)
	}
	_, err = limiter.CheckEviction(ctx, as("nothing"))
	if err == nil || !strings.Contains(err.Error(), "+info") {
		t.Errorf("CheckEviction with neither INFO nor CONFIG: %v, want an error naming +info", err)
	}
}

// TestDocumentedACLAllowsEvictionCheck: the ACL docs/reliability.md
// recommends lets the eviction check run.
func TestDocumentedACLAllowsEvictionCheck(t *testing.T) {
	addr, _ := startAuthServer(t)
	c := redis.NewClient(&redis.Options{Addr: addr, Username: "floodgate", Password: botPassword})
	t.Cleanup(func() { c.Close() })
	if e, err := limiter.CheckEviction(context.Background(), c); err != nil || e.Policy == "" {
		t.Fatalf("CheckEviction as the documented ACL user: %+v, %v", e, err)
	}
}

// TestServeShowsEvictionRisk: floodgate serve on a volatile-lru Redis logs
// the warning at startup, and /readyz and /metrics show it.
func TestServeShowsEvictionRisk(t *testing.T) {
	srv := startRedis(t, "--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru")
	p := startServeProc(t, map[string]string{"FLOODGATE_REDIS_URL": "redis://" + srv.Addr})
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	code, body, err := callJSON(c, "GET", p.URL+"/readyz", "")
	if err != nil || code != 200 || body["maxmemory_policy"] != "volatile-lru" || body["eviction_unsafe"] != true ||
		!strings.Contains(fmt.Sprint(body["warning"]), "noeviction") {
		t.Errorf("/readyz on a volatile-lru Redis: %d %v %v", code, body, err)
	}
	if v, n, err := scrape(context.Background(), p.URL+"/metrics", "floodgate_redis_eviction_unsafe"); err != nil || n != 1 || v != 1 {
		t.Errorf("/metrics: floodgate_redis_eviction_unsafe %v in %d samples (%v), want 1 in one", v, n, err)
	}
	if out := p.Output(); !strings.Contains(out, "WARN") || !strings.Contains(out, "CONFIG SET maxmemory-policy noeviction") {
		t.Errorf("floodgate serve printed no startup warning with the fix:\n%s", out)
	}
}

// testClusterEvictionEveryMaster: one master of three set to allkeys-lru
// makes the Cluster unsafe, named by its address.
func testClusterEvictionEveryMaster(t *testing.T, env *clusterEnv) {
	ctx := context.Background()
	masters, err := env.c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rdb := env.client(t, limiter.DefaultConfig())
	e, err := limiter.CheckEviction(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	if e.Masters != len(masters) {
		t.Fatalf("checked %d masters, the cluster has %d", e.Masters, len(masters))
	}
	if e.Unsafe {
		t.Skipf("the cluster's nodes can evict already (%+v): nothing to show", e)
	}
	bad := masters[len(masters)-1].Addr
	node := env.c.Client(bad)
	if err := node.ConfigSet(ctx, "maxmemory", "64mb").Err(); err != nil {
		t.Fatal(err)
	}
	if err := node.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		node.ConfigSet(context.Background(), "maxmemory-policy", "noeviction")
		node.ConfigSet(context.Background(), "maxmemory", "0")
	})
	e, err = limiter.CheckEviction(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Unsafe || e.Node != bad || e.Policy != "allkeys-lru" || e.Masters != len(masters) {
		t.Fatalf("CheckEviction with %s on allkeys-lru: %+v", bad, e)
	}
	if !strings.Contains(e.Warning(), bad) {
		t.Errorf("warning %q does not name the master %s", e.Warning(), bad)
	}
}
