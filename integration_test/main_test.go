// Package integration_test replays Floodgate's scenarios against a real
// redis-server: TTL decay, NOSCRIPT after SCRIPT FLUSH, memory, Cluster
// slots and concurrency across OS processes.
//
// The tests start their own redis-server (from PATH, free loopback port, no
// persistence) unless REDIS_URL is set. Without either they skip, except
// when CI is set, where they fail: CI must exercise real Redis.
package integration_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// redisURL is the shared server for tests that need no special setup.
var (
	redisURL   string
	noRedisWhy string
	prefixSeq  atomic.Int64
)

func TestMain(m *testing.M) {
	// go-redis logs each failed dial; outage tests make many on purpose.
	redis.SetLogger(cli.QuietLogger{})
	if role := os.Getenv(workerEnv); role != "" {
		os.Exit(runWorker(role))
	}
	flag.Parse()
	if flag.Lookup("test.run").Value.String() == "" {
		prebuild("floodgate", "loadgen") // chatbot-demo's tests are slow ones
	}
	var srv *redisproc.Server
	redisURL = os.Getenv("REDIS_URL")
	if redisURL == "" {
		var err error
		srv, err = redisproc.Start(context.Background(), redisproc.Options{})
		if err != nil {
			noRedisWhy = err.Error()
		} else {
			redisURL = "redis://" + srv.Addr
		}
	}
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	os.Exit(code)
}

// prebuild starts building the commands the tests run, side by side, as
// the first tests start: after an edit each is a link of seconds on a
// loaded machine, which the first test to call commandBin would otherwise
// wait for in turn. Only for a whole run: a -run selection may need none.
func prebuild(names ...string) {
	binsMu.Lock()
	defer binsMu.Unlock()
	for _, name := range names {
		b := &builtBin{}
		bins[name] = b
		go b.once.Do(func() { b.path, b.err = buildCommand(name) })
	}
}

// needRedis skips (or, under CI, fails) when no real Redis is available.
func needRedis(t testing.TB) {
	t.Helper()
	if redisURL != "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but no Redis: %s (install redis-server or set REDIS_URL)", noRedisWhy)
	}
	t.Skipf("no Redis: %s (install redis-server or set REDIS_URL)", noRedisWhy)
}

// needRedisServer is needRedis for tests that must start their own servers
// (restarts, Cluster, ACL, TLS).
func needRedisServer(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set but redis-server is not on PATH")
	}
	t.Skip("redis-server is not on PATH")
}

// needTool returns name's path; it skips without one, except under CI
// (.ci/run installs the Debian package pkg), where it fails.
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s is not on PATH (.ci/run installs %s)", name, pkg)
	}
	t.Skipf("%s is not on PATH", name)
	return ""
}

// skipIfShort skips a slow test under `go test -short`, the tier to run
// while editing; CI's full command runs it. The comment at each call names
// the quicker real-Redis test that -short still runs for that area.
func skipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow: runs without -short")
	}
}

// startRedis starts a redis-server of the test's own, with args, and
// stops it when the test ends.
func startRedis(t testing.TB, args ...string) *redisproc.Server {
	t.Helper()
	needRedisServer(t)
	srv, err := redisproc.Start(context.Background(), redisproc.Options{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// privateClient is a client, with up to 64 connections, on a
// redis-server of the test's own started with args: for tests that
// measure or fill the whole server.
func privateClient(t testing.TB, args ...string) *redis.Client {
	t.Helper()
	srv := startRedis(t, args...)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// client connects to the shared server.
func client(t testing.TB) *redis.Client {
	t.Helper()
	needRedis(t)
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", redisURL, err)
	}
	opt.PoolSize = 128
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// prefixedClient is a client on the shared server and a key prefix of
// the test's own on it (uniquePrefix).
func prefixedClient(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rdb := client(t)
	return rdb, uniquePrefix(t, rdb)
}

// clusterModeNode starts a redis-server of its own with cluster mode on
// and no slots assigned: enough to ask where keys live (CLUSTER KEYSLOT),
// or to serve as a one-node Cluster once given the slots.
func clusterModeNode(t testing.TB) (addr string, node *redis.Client) {
	t.Helper()
	srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	node = redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { node.Close() })
	return srv.Addr, node
}

// uniquePrefix isolates one test's keys on the shared server, and deletes
// them at the end.
func uniquePrefix(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	p := fmt.Sprintf("fgtest%d_%d:", os.Getpid(), prefixSeq.Add(1))
	t.Cleanup(func() { deleteKeys(rdb, p+"*") })
	return p
}

func deleteKeys(rdb redis.UniversalClient, pattern string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
}

// newLimiter builds a Limiter on rdb with its own prefix.
func newLimiter(t testing.TB, rdb redis.UniversalClient, cfg limiter.Config) *limiter.Limiter {
	t.Helper()
	if cfg.KeyPrefix == "" || cfg.KeyPrefix == limiter.DefaultConfig().KeyPrefix {
		cfg.KeyPrefix = uniquePrefix(t, rdb)
	}
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatalf("limiter.New: %v", err)
	}
	return l
}

// urlLimiter builds a Limiter on a client from limiter.NewClient(cfg)
// (cfg.RedisURL), closed when the test ends; cfg.KeyPrefix is kept as is.
func urlLimiter(t testing.TB, cfg limiter.Config) *limiter.Limiter {
	t.Helper()
	rdb, err := limiter.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
