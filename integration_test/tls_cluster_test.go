package integration_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// TestTLSCluster: docs/reliability.md, TLS and Redis Cluster: a
// rediss:// list of Cluster nodes reaches every master over TLS, each
// node's certificate checked against the CA. The nodes speak TLS to
// clients and on the cluster bus (tls-cluster yes), and their plain-text
// ports are closed before the Limiter connects, so every shared decision
// crossed TLS.
func TestTLSCluster(t *testing.T) {
	skipIfShort(t) // -short: the fast tier keeps a quicker test of this area
	needRedisServer(t)
	cli := needTool(t, "redis-cli", "redis-tools")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	files, err := redisproc.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var tlsAddrs []string
	var plain []*redis.Client
	for i := 0; i < 3; i++ {
		tlsPort, err := redisproc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		bus, err := redisproc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		args := append(files.ServerArgs(tlsPort),
			"--cluster-enabled", "yes", "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", tlsPort),
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "2000",
			"--tls-cluster", "yes", "--tls-replication", "yes")
		srv := startRedis(t, args...)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		t.Cleanup(func() { c.Close() })
		plain = append(plain, c)
		tlsAddrs = append(tlsAddrs, "127.0.0.1:"+strconv.Itoa(tlsPort))
	}
	create := exec.CommandContext(ctx, cli, append(append([]string{"--tls", "--cacert", files.CAFile, "--cluster", "create"}, tlsAddrs...),
		"--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --tls --cluster create: %v: %s", err, out)
	}
	for _, c := range plain {
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the TLS cluster never became healthy: %q, %v", info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// From here on, TLS only.
	for _, c := range plain {
		if err := c.ConfigSet(ctx, "port", "0").Err(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}

	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 5 * time.Second
	cfg.LocalCacheSize = 0
	cfg.RedisURL = "rediss://" + strings.Join(tlsAddrs, ",rediss://")
	rdb, err := limiter.NewClient(cfg, limiter.WithTLSConfig(files.ClientConfig()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("NewClient(%q) gave a %T, want a *redis.ClusterClient", limiter.RedactURL(cfg.RedisURL), rdb)
	}
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const users = 300
	for round, want := range []bool{true, false} {
		for i := 0; i < users; i++ {
			d, err := l.Allow(ctx, fmt.Sprintf("tls_user_%03d", i))
			if err != nil || d.Degraded || d.Allowed != want {
				t.Fatalf("round %d, user %d over TLS: %+v, %v; want a shared decision, allowed=%v", round, i, d, err, want)
			}
		}
	}
	// Every master holds some of the users, reached over TLS.
	for _, addr := range tlsAddrs {
		c := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: files.ClientConfig()})
		n, err := c.DBSize(ctx).Result()
		c.Close()
		if err != nil || n == 0 {
			t.Errorf("master %s over TLS: %d keys, %v; want some of the %d users", addr, n, err, users)
		}
	}
	// A client that does not trust the CA is refused by every node.
	bad, err := limiter.NewClient(cfg, limiter.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA: %v, want a certificate error", err)
	}
	e, err := limiter.CheckEviction(ctx, rdb)
	if err != nil || e.Masters != 3 {
		t.Errorf("CheckEviction on the TLS cluster: %+v, %v; want 3 masters read", e, err)
	}
}
