package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// Where loadgen measures.
const (
	modeEmbedded  = "embedded"  // a redis-server started and stopped by loadgen
	modeURL       = "url"       // the user's own Redis: only our prefix is touched
	modeMiniredis = "miniredis" // in-process fallback: no Redis memory figures
	modeCluster   = "cluster"   // an N-master Redis Cluster started by loadgen
)

// errUnreachable marks a Redis that does not answer. It counts as a
// usage error (exit status 2): the address given is what is wrong.
var errUnreachable error = unreachableError{}

type unreachableError struct{}

func (unreachableError) Error() string        { return "loadgen: redis unreachable" }
func (unreachableError) Is(target error) bool { return target == cli.ErrUsage }

// poolSize covers the populate workers and the throughput goroutines.
func poolSize(goroutines int) int { return max(populateWorkers, goroutines) + 4 }

// target is the Redis under test and how to put it back as it was.
//
// loadgen keeps no connection open between operations: each one dials a
// client (with) and closes it. A connection holds tens of kB of buffers in
// Redis that grow with big pipelines and shrink in serverCron when idle,
// which at 100 users would move used_memory by 100 B per user; so every
// used_memory reading waits until Redis has dropped every other loadgen
// connection (connected_clients back to baseClients).
type target struct {
	mode string
	desc string // for humans: "embedded redis-server on 127.0.0.1:41234"
	dial func(pool int) (redis.UniversalClient, error)
	srv  *redisproc.Server
	clu  *redisproc.Cluster
	// replicas per master (--replicas): their memory is read too.
	replicas int
	mini     *miniredis.Miniredis
	prefix   string
	// baseClients is connected_clients (summed over masters) with one
	// loadgen connection open: other clients of a shared Redis included.
	baseClients int64
}

// openTarget connects to o.redisURL, or starts an embedded server.
func openTarget(ctx context.Context, o options, logf func(string, ...any)) (*target, error) {
	t := &target{prefix: o.prefix}
	switch {
	case o.redisURL != "":
		raw := o.redisURL
		t.mode, t.desc = modeURL, limiter.RedactURL(raw)
		t.dial = func(pool int) (redis.UniversalClient, error) { return dialURL(raw, pool) }
		// NewClient contacts no one: an error here is the URL itself.
		c, err := t.dial(1)
		if err != nil {
			return nil, usagef("%s: %v", o.urlFrom, err)
		}
		_ = c.Close()
	case o.cluster > 0:
		logf("starting a %d-master Redis Cluster", o.cluster)
		c, err := redisproc.StartCluster(ctx, o.cluster, o.replicas, debugArgs...)
		if err != nil {
			if errors.Is(err, redisproc.ErrNotInstalled) || errors.Is(err, redisproc.ErrNoCLI) {
				return nil, fmt.Errorf("%w: --cluster needs redis-server and redis-cli on PATH (%s)", errUnreachable, installHint)
			}
			return nil, fmt.Errorf("loadgen: starting the cluster: %w", err)
		}
		t.mode, t.clu = modeCluster, c
		t.desc = fmt.Sprintf("embedded %d-master Redis Cluster on %s", o.cluster, strings.Join(c.Addrs, ","))
		if o.replicas > 0 {
			t.desc = fmt.Sprintf("embedded %d-master Redis Cluster (%d replica(s) each) on %s", o.cluster, o.replicas, strings.Join(c.Addrs, ","))
			t.replicas = o.replicas
		}
		t.dial = func(pool int) (redis.UniversalClient, error) {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs, PoolSize: pool, ContextTimeoutEnabled: true,
				ReadTimeout: clientTimeout, WriteTimeout: clientTimeout}), nil
		}
	default:
		srv, err := redisproc.Start(ctx, redisproc.Options{Args: debugArgs})
		switch {
		case errors.Is(err, redisproc.ErrNotInstalled):
			m := miniredis.NewMiniRedis()
			if err := m.Start(); err != nil {
				return nil, fmt.Errorf("loadgen: starting miniredis: %w", err)
			}
			t.mode, t.mini, t.desc = modeMiniredis, m, "in-process miniredis on "+m.Addr()+" (not Redis: no memory figures)"
			t.dial = addrDialer(m.Addr())
		case err != nil:
			return nil, fmt.Errorf("loadgen: starting the embedded redis-server: %w", err)
		default:
			t.mode, t.srv, t.desc = modeEmbedded, srv, "embedded redis-server on "+srv.Addr
			t.dial = addrDialer(srv.Addr)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := t.with(pctx, func(c redis.UniversalClient) error {
		if err := c.Ping(pctx).Err(); err != nil {
			return err
		}
		if t.owned() {
			// The server is ours: per-command latency histograms (Redis 7)
			// are a constant that has nothing to do with users. Redis 6 has
			// no such setting; the error is of no consequence.
			_ = eachMaster(pctx, c, func(ctx context.Context, c *redis.Client) error {
				_ = c.ConfigSet(ctx, "latency-tracking", "no").Err()
				return nil
			})
		}
		n, _, err := infoInt(pctx, c, "clients", "connected_clients")
		t.baseClients = n
		return err
	})
	if err != nil {
		t.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s %s: %v", errUnreachable, o.urlFrom, t.desc, err)
	}
	return t, nil
}

func addrDialer(addr string) func(pool int) (redis.UniversalClient, error) {
	return func(pool int) (redis.UniversalClient, error) {
		return redis.NewClient(&redis.Options{Addr: addr, PoolSize: pool, ContextTimeoutEnabled: true}), nil
	}
}

// clientTimeout bounds each call of loadgen's clients: generous, since the
// machine under test may be loaded; a Redis that does not answer within
// it is an error, never a figure.
const clientTimeout = 10 * time.Second

// dialURL builds a client for raw with the library's NewClient, so loadgen
// reads every URL form a bot does (single node, Cluster seeds, Sentinel,
// TLS). pool is the connections per node.
func dialURL(raw string, pool int) (redis.UniversalClient, error) {
	cfg := limiter.DefaultConfig()
	cfg.RedisURL = raw
	cfg.RedisTimeout = clientTimeout
	return limiter.NewClient(cfg, limiter.WithRedisOptions(func(o *redis.UniversalOptions) {
		o.PoolSize = pool
	}))
}

// quiesceTimeout bounds the wait for Redis to drop closed connections;
// on a busy shared Redis other clients may never let the count settle.
const quiesceTimeout = 500 * time.Millisecond

// with runs fn on a fresh client of one connection per node and closes it.
func (t *target) with(ctx context.Context, fn func(c redis.UniversalClient) error) error {
	c, err := t.dial(1)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	defer c.Close()
	return fn(c)
}

// withWorkers runs fn with a client of pool connections, then closes it.
func (t *target) withWorkers(pool int, fn func(w redis.UniversalClient) error) error {
	w, err := t.dial(pool)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	defer w.Close()
	return fn(w)
}

// quiesce waits until c is loadgen's only connection: closed clients are
// dropped by Redis on its next event loop turn, a moment after Close.
func (t *target) quiesce(ctx context.Context, c redis.UniversalClient) error {
	deadline := time.Now().Add(quiesceTimeout)
	for {
		n, ok, err := infoInt(ctx, c, "clients", "connected_clients")
		if err != nil || !ok || n <= t.baseClients || time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return err
		}
	}
}

// owned: loadgen started the server(s), so nothing else runs there.
func (t *target) owned() bool { return t.mode == modeEmbedded || t.mode == modeCluster }

// installHint is the one command that gives loadgen a real Redis.
const installHint = "apt-get install -y redis-server"

// debugArgs let loadgen see, on its own servers, when Redis has finished
// rehashing its key tables (DEBUG HTSTATS) before it reads used_memory.
var debugArgs = []string{"--enable-debug-command", "local"}

// close stops what openTarget started. Keys are removed by the caller
// first (purgePrefix).
func (t *target) close() {
	if t.srv != nil {
		t.srv.Stop()
	}
	if t.clu != nil {
		t.clu.Stop()
	}
	if t.mini != nil {
		t.mini.Close()
	}
}

// eachMaster runs fn on every node holding data: the one server, or every
// Cluster master (concurrently; fn must be safe for that).
func eachMaster(ctx context.Context, rdb redis.UniversalClient, fn func(ctx context.Context, c *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	default:
		return fmt.Errorf("loadgen: unsupported client %T", rdb)
	}
}

// parseInfo turns an INFO reply into field → value.
func parseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// infoInt sums an integer INFO field over every master c reaches. ok is
// false when a node does not report it (miniredis has no INFO memory).
func infoInt(ctx context.Context, c redis.UniversalClient, section, field string) (total int64, ok bool, err error) {
	var mu sync.Mutex
	ok = true
	err = eachMaster(ctx, c, func(ctx context.Context, c *redis.Client) error {
		s, err := c.Info(ctx, section).Result()
		if err != nil {
			if isUnsupported(err) {
				mu.Lock()
				ok = false
				mu.Unlock()
				return nil
			}
			return err
		}
		v, has := parseInfo(s)[field]
		n, perr := strconv.ParseInt(v, 10, 64)
		mu.Lock()
		defer mu.Unlock()
		if !has || perr != nil {
			ok = false
			return nil
		}
		total += n
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("loadgen: INFO %s: %w", section, err)
	}
	return total, ok, nil
}

// isUnsupported recognises "this server does not do that" replies
// (miniredis, managed services that rename or disable commands).
func isUnsupported(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := strings.ToLower(rerr.Error())
	for _, s := range []string{"not supported", "unknown command", "unknown subcommand", "err unknown", "noperm", "disabled"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// usedMemory is INFO memory used_memory summed over the masters, read
// when the reading connection is loadgen's only one.
func (t *target) usedMemory(ctx context.Context) (n int64, ok bool, err error) {
	err = t.with(ctx, func(c redis.UniversalClient) error {
		if err := t.quiesce(ctx, c); err != nil {
			return err
		}
		n, ok, err = infoInt(ctx, c, "memory", "used_memory")
		return err
	})
	return n, ok, err
}

// expiredKeys is INFO stats expired_keys: keys Redis deleted because their
// TTL ran out (actively or when touched), summed over the masters.
func (t *target) expiredKeys(ctx context.Context) (n int64, ok bool, err error) {
	err = t.with(ctx, func(c redis.UniversalClient) error {
		n, ok, err = infoInt(ctx, c, "stats", "expired_keys")
		return err
	})
	return n, ok, err
}

// serverInfo describes the Redis for the report.
type serverInfo struct {
	Version             string `json:"redis_version"`
	Mode                string `json:"redis_mode"`
	Allocator           string `json:"mem_allocator"`
	Masters             int    `json:"masters"`
	Hz                  string `json:"hz"`
	Maxmemory           string `json:"maxmemory"`
	ZsetListpackEntries string `json:"zset_max_listpack_entries"`
	ZsetListpackValue   string `json:"zset_max_listpack_value"`
}

// describe reads the version and the settings that decide memory use from
// the first master. Fields a server does not report are "n/a".
func (t *target) describe(ctx context.Context) (serverInfo, error) {
	si := serverInfo{Version: "n/a", Mode: "n/a", Allocator: "n/a", Hz: "n/a", Maxmemory: "n/a", ZsetListpackEntries: "n/a", ZsetListpackValue: "n/a"}
	if t.mode == modeMiniredis {
		si.Version, si.Mode, si.Masters = "miniredis "+miniredisVersion(), "in-process", 1
		return si, nil
	}
	err := t.with(ctx, func(c redis.UniversalClient) error {
		return describeWith(ctx, c, &si)
	})
	return si, err
}

func describeWith(ctx context.Context, c redis.UniversalClient, si *serverInfo) error {
	var mu sync.Mutex
	var first *redis.Client
	err := eachMaster(ctx, c, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		si.Masters++
		if first == nil {
			first = c
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loadgen: listing masters: %w", err)
	}
	s, err := first.Info(ctx, "server").Result()
	if err != nil && !isUnsupported(err) {
		return fmt.Errorf("loadgen: INFO server: %w", err)
	}
	info := parseInfo(s)
	if m, err := first.Info(ctx, "memory").Result(); err == nil {
		for k, v := range parseInfo(m) {
			info[k] = v
		}
	}
	set := func(dst *string, k string) {
		if v, ok := info[k]; ok && v != "" {
			*dst = v
		}
	}
	set(&si.Version, "redis_version")
	set(&si.Mode, "redis_mode")
	set(&si.Allocator, "mem_allocator")
	set(&si.Hz, "hz")
	set(&si.Maxmemory, "maxmemory")
	// Redis 7 names them listpack; 6 still ziplist.
	for _, names := range [][2]string{{"zset-max-listpack-entries", "zset-max-ziplist-entries"}, {"zset-max-listpack-value", "zset-max-ziplist-value"}} {
		dst := &si.ZsetListpackEntries
		if strings.HasSuffix(names[0], "value") {
			dst = &si.ZsetListpackValue
		}
		for _, name := range names {
			if m, err := first.ConfigGet(ctx, name).Result(); err == nil && m[name] != "" {
				*dst = m[name]
				break
			}
		}
	}
	return nil
}

// miniredisVersion is the linked miniredis module's version.
func miniredisVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/alicebob/miniredis/v2" {
				return d.Version
			}
		}
	}
	return "v2"
}

// scanBatch is the SCAN COUNT hint and the UNLINK pipeline length.
const scanBatch = 1000

// countBatch is countKeys' SCAN COUNT: larger than the purge's, so a count
// of 50,000 keys takes a few round trips.
const countBatch = 10_000

// purge deletes every key under prefix with SCAN MATCH + UNLINK and
// returns how many it deleted and how long that took (timed once its
// connection is up). UNLINK goes one key per command in a pipeline, so it
// works on a Cluster node whatever the keys' slots.
func (t *target) purge(ctx context.Context, prefix string) (n int64, took time.Duration, err error) {
	var mu sync.Mutex
	err = t.with(ctx, func(c redis.UniversalClient) error {
		// Connect to every master before the clock starts. Best effort:
		// when a node is down, the others must still be purged (this is
		// also the clean-up on the way out).
		_ = eachMaster(ctx, c, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
		start := time.Now()
		defer func() { took = time.Since(start) }()
		return eachMaster(ctx, c, func(ctx context.Context, c *redis.Client) error {
			var cursor uint64
			for {
				keys, next, err := c.Scan(ctx, cursor, prefix+"*", scanBatch).Result()
				if err != nil {
					return err
				}
				if len(keys) > 0 {
					pipe := c.Pipeline()
					cmds := make([]*redis.IntCmd, len(keys))
					for i, k := range keys {
						cmds[i] = pipe.Unlink(ctx, k)
					}
					if _, err := pipe.Exec(ctx); err != nil {
						return err
					}
					var k int64
					for _, cmd := range cmds {
						k += cmd.Val()
					}
					mu.Lock()
					n += k
					mu.Unlock()
				}
				if cursor = next; cursor == 0 {
					return nil
				}
			}
		})
	})
	if err != nil {
		return n, took, fmt.Errorf("loadgen: purging %s*: %w", prefix, err)
	}
	return n, took, nil
}

// memoryUsage returns MEMORY USAGE of each key (0 for a missing key); ok is
// false when the server does not support the command.
func (t *target) memoryUsage(ctx context.Context, keys []string) (sizes []int64, ok bool, err error) {
	if t.mode == modeMiniredis || len(keys) == 0 {
		return nil, false, nil
	}
	cmds := make([]*redis.IntCmd, len(keys))
	_ = t.with(ctx, func(c redis.UniversalClient) error {
		pipe := c.Pipeline()
		for i, k := range keys {
			// SAMPLES 0: every element, exact for our small sets.
			cmds[i] = pipe.MemoryUsage(ctx, k, 0)
		}
		_, _ = pipe.Exec(ctx)
		return nil
	})
	sizes = make([]int64, len(keys))
	for i, c := range cmds {
		v, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil && isUnsupported(err):
			return nil, false, nil
		case err != nil:
			return nil, false, fmt.Errorf("loadgen: MEMORY USAGE %s: %w", keys[i], err)
		}
		sizes[i] = v
	}
	return sizes, true, nil
}
