package redisproc

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The failover settings StartSentinel gives every sentinel: a master
// silent for SentinelDownAfter is subjectively down, and once a quorum of
// sentinels agrees a replica is promoted, usually within a second or two
// more. A failover that stalls is retried after SentinelFailoverTimeout.
const (
	SentinelDownAfter       = time.Second
	SentinelFailoverTimeout = 5 * time.Second
	// SentinelMasterName is the name the sentinels monitor the master as.
	SentinelMasterName = "floodgate"
)

// Sentinel is a throwaway Redis Sentinel deployment on loopback: a master,
// its replicas and three sentinels (quorum 2), each process in its own
// temporary directory. Roles change with failovers: ask Master. Its
// methods are safe for concurrent use.
type Sentinel struct {
	// Sentinels are the sentinels' addresses ("127.0.0.1:port").
	Sentinels []string
	// Data are the master's and replicas' addresses, in start order (the
	// first was the master at start).
	Data []string

	mu        sync.Mutex
	data      map[string]*Server
	sentinels []*Server
	stopped   bool
}

// StartSentinel starts a master, replicas replicas of it and three
// sentinels monitoring it as SentinelMasterName, and waits (at most a
// minute) until every sentinel agrees on the master and knows the other
// sentinels and every replica, and every replica is in sync. Stop tears
// everything down.
func StartSentinel(ctx context.Context, replicas int) (*Sentinel, error) {
	if replicas < 1 {
		return nil, fmt.Errorf("redisproc: a Sentinel deployment needs at least 1 replica, got %d", replicas)
	}
	s := &Sentinel{data: map[string]*Server{}}
	master, err := s.startData(ctx, 0, "")
	if err != nil {
		return nil, err
	}
	for i := 0; i < replicas; i++ {
		if _, err := s.startData(ctx, 0, master.Addr); err != nil {
			s.Stop()
			return nil, err
		}
	}
	for i := 0; i < 3; i++ {
		if err := s.startSentinel(ctx, master.Port); err != nil {
			s.Stop()
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.WaitHealthy(wctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// URL is the redis-sentinel:// URL of the deployment (limiter.NewClient).
func (s *Sentinel) URL() string {
	return "redis-sentinel://" + strings.Join(s.Sentinels, ",") + "/" + SentinelMasterName
}

// startData starts a data node, a replica of replicaOf unless that is
// empty, in a new directory of its own (an empty one for a restart: the
// killed node's goes with it).
func (s *Sentinel) startData(ctx context.Context, port int, replicaOf string) (*Server, error) {
	opt := Options{Port: port}
	if replicaOf != "" {
		host, p, _ := net.SplitHostPort(replicaOf)
		opt.Args = []string{"--replicaof", host, p}
	}
	srv, err := Start(ctx, opt)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, known := s.data[srv.Addr]; known {
		old.Stop()
	} else {
		s.Data = append(s.Data, srv.Addr)
	}
	s.data[srv.Addr] = srv
	return srv, nil
}

// startSentinel runs redis-server --sentinel with a config file of its own
// (sentinels rewrite it) monitoring the master on masterPort.
func (s *Sentinel) startSentinel(ctx context.Context, masterPort int) error {
	srv, err := run(ctx, Options{}, func(srv *Server) ([]string, error) {
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
loglevel notice
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %[3]s %[5]d
sentinel failover-timeout %[3]s %[6]d
sentinel parallel-syncs %[3]s 1
`, srv.Port, srv.dir, SentinelMasterName, masterPort, SentinelDownAfter.Milliseconds(), SentinelFailoverTimeout.Milliseconds())
		path := filepath.Join(srv.dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return nil, fmt.Errorf("redisproc: %w", err)
		}
		return []string{path, "--sentinel"}, nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.sentinels = append(s.sentinels, srv)
	s.Sentinels = append(s.Sentinels, srv.Addr)
	s.mu.Unlock()
	return nil
}

// Master asks the sentinels (the first that answers) for the master's
// address.
func (s *Sentinel) Master(ctx context.Context) (string, error) {
	var lastErr error
	for _, addr := range s.Sentinels {
		addr, err := s.masterFrom(ctx, addr)
		if err == nil {
			return addr, nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("redisproc: no sentinel named the master: %w", lastErr)
}

func (s *Sentinel) masterFrom(ctx context.Context, sentinel string) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer sc.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	hp, err := sc.GetMasterAddrByName(cctx, SentinelMasterName).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("redisproc: sentinel %s answered %q for the master", sentinel, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// WaitHealthy waits until every sentinel names the same master, which a
// live data node confirms with role master, every other live data node is
// its replica in sync (master_link_status up), and every sentinel knows
// the two others and every live replica.
func (s *Sentinel) WaitHealthy(ctx context.Context) error {
	var why string
	for {
		if why = s.unhealthy(ctx); why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redisproc: sentinel deployment not healthy: %s", why)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Sentinel) unhealthy(ctx context.Context) string {
	s.mu.Lock()
	live := map[string]bool{}
	for addr, srv := range s.data {
		select {
		case <-srv.done:
		default:
			live[addr] = true
		}
	}
	s.mu.Unlock()
	master := ""
	for _, sent := range s.Sentinels {
		m, err := s.masterFrom(ctx, sent)
		if err != nil {
			return fmt.Sprintf("sentinel %s: %v", sent, err)
		}
		if master != "" && m != master {
			return fmt.Sprintf("sentinels disagree on the master: %s and %s", master, m)
		}
		master = m
	}
	if !live[master] {
		return "the sentinels name " + master + ", which is down"
	}
	for addr := range live {
		rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
		info, err := rdb.Info(ctx, "replication").Result()
		rdb.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", addr, err)
		}
		if addr == master && !strings.Contains(info, "role:master") {
			return addr + " is named master but is not one yet"
		}
		if addr != master && (!strings.Contains(info, "role:slave") || !strings.Contains(info, "master_port:"+portOf(master)+"\r") || !strings.Contains(info, "master_link_status:up")) {
			return addr + " is not yet an in-sync replica of " + master
		}
	}
	for _, sent := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: sent, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
		others, err := sc.Sentinels(ctx, SentinelMasterName).Result()
		var reps []map[string]string
		if err == nil {
			reps, err = sc.Replicas(ctx, SentinelMasterName).Result()
		}
		sc.Close()
		if err != nil {
			return fmt.Sprintf("sentinel %s: %v", sent, err)
		}
		if len(others) != len(s.Sentinels)-1 {
			return fmt.Sprintf("sentinel %s knows %d other sentinels", sent, len(others))
		}
		ok := 0
		for _, r := range reps {
			if live[net.JoinHostPort(r["ip"], r["port"])] && !strings.Contains(r["flags"], "down") && !strings.Contains(r["flags"], "disconnected") {
				ok++
			}
		}
		if ok != len(live)-1 {
			return fmt.Sprintf("sentinel %s sees %d of %d live replicas", sent, ok, len(live)-1)
		}
	}
	return ""
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// Kill stops the data node at addr with SIGKILL, as a crash would.
func (s *Sentinel) Kill(addr string) error {
	s.mu.Lock()
	srv, ok := s.data[addr]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("redisproc: no data node %s", addr)
	}
	srv.Kill()
	return nil
}

// WaitFailover waits until the sentinels name a master other than old and
// that node answers as master; it returns the new master's address.
func (s *Sentinel) WaitFailover(ctx context.Context, old string) (string, error) {
	for {
		m, err := s.Master(ctx)
		if err == nil && m != old {
			rdb := redis.NewClient(&redis.Options{Addr: m, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
			info, ierr := rdb.Info(ctx, "replication").Result()
			rdb.Close()
			if ierr == nil && strings.Contains(info, "role:master") {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("redisproc: no failover from %s: %w", old, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Restart starts a killed data node again on its port, empty, as a
// replica of the current master (as a crashed master's host brought back
// would be reconfigured by the sentinels).
func (s *Sentinel) Restart(ctx context.Context, addr string) error {
	master, err := s.Master(ctx)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(portOf(addr))
	if err != nil {
		return fmt.Errorf("redisproc: bad address %q", addr)
	}
	_, err = s.startData(ctx, p, master)
	return err
}

// Output returns every process's output so far, for test failures.
func (s *Sentinel) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, addr := range s.Data {
		fmt.Fprintf(&b, "--- data %s\n%s", addr, s.data[addr].Output())
	}
	for _, srv := range s.sentinels {
		fmt.Fprintf(&b, "--- sentinel %s\n%s", srv.Addr, srv.Output())
	}
	return b.String()
}

// Stop stops every process and removes their directories. It is safe to
// call more than once.
func (s *Sentinel) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	for _, srv := range s.sentinels {
		srv.Stop()
	}
	for _, srv := range s.data {
		srv.Stop()
	}
}

// Signal sends sig to the data node at addr: SIGSTOP and SIGCONT freeze
// and thaw a replica, to make it lag.
func (s *Sentinel) Signal(addr string, sig os.Signal) error {
	s.mu.Lock()
	srv, ok := s.data[addr]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("redisproc: no data node %s", addr)
	}
	return srv.Signal(sig)
}
