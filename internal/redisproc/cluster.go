package redisproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout StartCluster sets: a
// master unreachable for this long is failed over to a replica.
const ClusterNodeTimeout = 2 * time.Second

// Cluster is a throwaway Redis Cluster on loopback: masters with their
// replicas, each a Server in its own temporary directory. Its methods are
// safe for concurrent use.
type Cluster struct {
	// Addrs lists every node ("127.0.0.1:port") in start order. Roles
	// are assigned by redis-cli and change with failovers: ask Nodes,
	// Masters or MasterOf.
	Addrs []string

	password string
	servers  map[string]*Server
	args     map[string][]string // each node's redis-server arguments

	mu      sync.Mutex
	clients map[string]*redis.Client
	stopped bool
}

// ClusterNode is one node as CLUSTER NODES describes it.
type ClusterNode struct {
	ID       string
	Addr     string // "127.0.0.1:port"
	Master   bool
	MasterID string // a replica's master; empty for masters
	// Failed is true when the node is flagged fail or fail? (unreachable).
	Failed bool
	// Slots are a master's slot ranges, both ends included.
	Slots [][2]int
}

// HasSlot reports whether the node serves slot.
func (n ClusterNode) HasSlot(slot int) bool {
	for _, r := range n.Slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// ErrNoCLI means no redis-cli binary is on PATH: StartCluster needs it to
// join the nodes.
var ErrNoCLI = errors.New("redisproc: redis-cli not found on PATH (needed to create a cluster)")

// StartCluster starts masters*(1+replicasPerMaster) redis-server nodes in
// cluster mode on free loopback ports (cluster-node-timeout 2 s, replicas
// always allowed to fail over), joins them with redis-cli --cluster create
// and waits until every node reports cluster_state:ok, knows every other
// node and every replica is in sync. extraArgs go to every redis-server;
// a "--requirepass pw" among them is also used as masterauth and by the
// harness itself. Stop tears everything down.
func StartCluster(ctx context.Context, masters, replicasPerMaster int, extraArgs ...string) (*Cluster, error) {
	if masters < 3 {
		return nil, fmt.Errorf("redisproc: a Redis Cluster needs at least 3 masters, got %d", masters)
	}
	if replicasPerMaster < 0 {
		return nil, fmt.Errorf("redisproc: negative replicas per master: %d", replicasPerMaster)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, ErrNoCLI
	}
	c := &Cluster{servers: map[string]*Server{}, args: map[string][]string{}, clients: map[string]*redis.Client{}}
	c.password = requirepass(extraArgs)
	args := append([]string(nil), extraArgs...)
	if c.password != "" && !slices.Contains(args, "--masterauth") {
		args = append(args, "--masterauth", c.password)
	}
	n := masters * (1 + replicasPerMaster)
	for i := 0; i < n; i++ {
		s, nodeArgs, err := c.startNode(ctx, args)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.servers[s.Addr] = s
		c.args[s.Addr] = nodeArgs
		c.Addrs = append(c.Addrs, s.Addr)
	}

	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmdArgs := append([]string{"--cluster", "create"}, c.Addrs...)
	cmdArgs = append(cmdArgs, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	cmd := exec.CommandContext(cctx, cli, cmdArgs...)
	cmd.Env = os.Environ()
	if c.password != "" {
		cmd.Env = append(cmd.Env, "REDISCLI_AUTH="+c.password)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redisproc: redis-cli --cluster create: %v: %s", err, bytes.TrimSpace(out))
	}
	if err := c.WaitHealthy(cctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// startNode starts one cluster node. The bus port is chosen explicitly
// (cluster-port) rather than left at port+10000, which may be taken or
// above 65535; a port grabbed by someone else between FreePort and the
// bind is retried.
func (c *Cluster) startNode(ctx context.Context, extra []string) (*Server, []string, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, nil, err
		}
		bus, err := FreePort()
		if err != nil {
			return nil, nil, err
		}
		if bus == port {
			continue
		}
		args := append([]string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port),
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
			"--cluster-port", strconv.Itoa(bus),
			// A replica that lost its master's link long ago may still be
			// promoted: tests kill masters on a noisy machine.
			"--cluster-replica-validity-factor", "0",
		}, extra...)
		s, err := Start(ctx, Options{Port: port, Args: args})
		if err == nil {
			return s, args, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, nil, lastErr
}

// Server returns the node listening on addr, nil if none.
func (c *Cluster) Server(addr string) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[addr]
}

// Client returns a plain client connected to the node at addr, for
// CLUSTER and INFO commands; it is closed by Stop.
func (c *Cluster) Client(addr string) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rdb, ok := c.clients[addr]; ok {
		return rdb
	}
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, Password: c.password, MaxRetries: -1, Protocol: 2,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, PoolSize: 4,
	})
	c.clients[addr] = rdb
	return rdb
}

// Alive reports whether the node at addr is still running.
func (c *Cluster) Alive(addr string) bool {
	s := c.Server(addr)
	if s == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Kill stops the node at addr with SIGKILL, as a crash would.
func (c *Cluster) Kill(addr string) error {
	s := c.Server(addr)
	if s == nil {
		return fmt.Errorf("redisproc: no cluster node at %s", addr)
	}
	s.Kill()
	return nil
}

// Restart starts the killed node at addr again, on the same ports and
// directory: it reads its nodes.conf, rejoins (as a replica when its
// slots were failed over meanwhile; its data is gone, there is no
// persistence) and Restart waits until the cluster is healthy.
func (c *Cluster) Restart(ctx context.Context, addr string) error {
	old := c.Server(addr)
	if old == nil {
		return fmt.Errorf("redisproc: no cluster node at %s", addr)
	}
	if c.Alive(addr) {
		return fmt.Errorf("redisproc: node %s is running", addr)
	}
	s, err := Start(ctx, Options{Port: old.Port, Args: c.args[addr], Dir: old.Dir()})
	if err != nil {
		return err
	}
	s.ownDir = old.ownDir
	c.mu.Lock()
	c.servers[addr] = s
	c.mu.Unlock()
	return c.WaitHealthy(ctx)
}

// Nodes returns the cluster as the first live node sees it.
func (c *Cluster) Nodes(ctx context.Context) ([]ClusterNode, error) {
	var lastErr error = errors.New("redisproc: no live node")
	for _, a := range c.Addrs {
		if !c.Alive(a) {
			continue
		}
		nodes, err := c.nodesSeenBy(ctx, a)
		if err == nil {
			return nodes, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func (c *Cluster) nodesSeenBy(ctx context.Context, addr string) ([]ClusterNode, error) {
	text, err := c.Client(addr).ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("redisproc: CLUSTER NODES on %s: %w", addr, err)
	}
	return parseClusterNodes(text)
}

// parseClusterNodes reads CLUSTER NODES: "<id> <ip:port@bus[,host]>
// <flags> <master> <ping> <pong> <epoch> <link> <slot>...".
func parseClusterNodes(text string) ([]ClusterNode, error) {
	var nodes []ClusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("redisproc: CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := ClusterNode{ID: f[0], Addr: addr}
		for _, flag := range strings.Split(f[2], ",") {
			switch flag {
			case "master":
				n.Master = true
			case "fail", "fail?":
				n.Failed = true
			}
		}
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being migrated
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("redisproc: CLUSTER NODES slot %q", s)
			}
			n.Slots = append(n.Slots, [2]int{a, b})
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Addr < nodes[j].Addr })
	return nodes, nil
}

// MasterOf returns the node serving slot.
func (c *Cluster) MasterOf(ctx context.Context, slot int) (ClusterNode, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return ClusterNode{}, err
	}
	for _, n := range nodes {
		if n.Master && !n.Failed && n.HasSlot(slot) {
			return n, nil
		}
	}
	return ClusterNode{}, fmt.Errorf("redisproc: no live master serves slot %d", slot)
}

// Masters returns the live masters that serve slots.
func (c *Cluster) Masters(ctx context.Context) ([]ClusterNode, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []ClusterNode
	for _, n := range nodes {
		if n.Master && !n.Failed && len(n.Slots) > 0 {
			out = append(out, n)
		}
	}
	return out, nil
}

// ReplicasOf returns the live replicas of the master with id masterID.
func (c *Cluster) ReplicasOf(ctx context.Context, masterID string) ([]ClusterNode, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []ClusterNode
	for _, n := range nodes {
		if !n.Master && !n.Failed && n.MasterID == masterID && c.Alive(n.Addr) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Failover runs CLUSTER FAILOVER [option] on the replica at replicaAddr
// (option "" for the graceful, coordinated one; "FORCE" or "TAKEOVER"
// when its master is down) and waits until the replica is a master and
// the cluster is healthy.
func (c *Cluster) Failover(ctx context.Context, replicaAddr, option string) error {
	args := []any{"cluster", "failover"}
	if option != "" {
		args = append(args, option)
	}
	rdb := c.Client(replicaAddr)
	if err := rdb.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("redisproc: CLUSTER FAILOVER %s on %s: %w", option, replicaAddr, err)
	}
	if err := c.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		role, err := rdb.Do(ctx, "role").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s is still %v", replicaAddr, role)
		}
		return nil
	}); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// WaitHealthy waits (at most 60 s) until every live node reports
// cluster_state:ok with all 16384 slots served, all live nodes agree on
// which node serves each slot, no live node is flagged failed, and every
// live replica's link to its master is up.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	return c.waitFor(ctx, time.Minute, c.healthy)
}

func (c *Cluster) healthy(ctx context.Context) error {
	var want string
	for _, a := range c.Addrs {
		if !c.Alive(a) {
			continue
		}
		rdb := c.Client(a)
		info, err := rdb.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", a, err)
		}
		for _, need := range []string{"cluster_state:ok", "cluster_slots_ok:16384"} {
			if !strings.Contains(info, need) {
				return fmt.Errorf("%s: no %s", a, need)
			}
		}
		nodes, err := c.nodesSeenBy(ctx, a)
		if err != nil {
			return err
		}
		if len(nodes) != len(c.Addrs) {
			return fmt.Errorf("%s knows %d nodes, want %d", a, len(nodes), len(c.Addrs))
		}
		var view []string
		for _, n := range nodes {
			if n.Failed == c.Alive(n.Addr) {
				return fmt.Errorf("%s sees %s as failed=%v", a, n.Addr, n.Failed)
			}
			if n.Master && len(n.Slots) > 0 {
				if !c.Alive(n.Addr) {
					return fmt.Errorf("%s still routes slots to dead %s", a, n.Addr)
				}
				view = append(view, fmt.Sprint(n.Addr, n.Slots))
			}
		}
		if v := strings.Join(view, " "); want == "" {
			want = v
		} else if v != want {
			return fmt.Errorf("nodes disagree on slots: %s vs %s", want, v)
		}
		repl, err := rdb.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO replication on %s: %w", a, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("replica %s is not in sync with its master", a)
		}
	}
	return nil
}

// waitFor polls check every 50 ms until it returns nil, ctx ends or limit
// passes; the error then says what was still wrong.
func (c *Cluster) waitFor(ctx context.Context, limit time.Duration, check func(context.Context) error) error {
	deadline := time.Now().Add(limit)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("redisproc: cluster not ready after %v: %v", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills every node, closes the harness's clients and removes the
// temporary directories. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	clients := c.clients
	c.clients = map[string]*redis.Client{}
	servers := make([]*Server, 0, len(c.servers))
	for _, s := range c.servers {
		servers = append(servers, s)
	}
	c.mu.Unlock()
	for _, rdb := range clients {
		rdb.Close()
	}
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func(s *Server) { defer wg.Done(); s.Stop() }(s)
	}
	wg.Wait()
}
