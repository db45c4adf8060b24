package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// ShardResult is one master's share of a test: its keys and memory, and
// the server time its decisions cost while N goroutines kept it busy.
type ShardResult struct {
	Node         string  `json:"node"`
	Keys         int64   `json:"keys"`
	DeltaBytes   int64   `json:"used_memory_delta_bytes"`
	BytesPerUser float64 `json:"bytes_per_user"` // delta / keys on this shard
	ServerTime
}

// ServerTime is what decisions cost inside Redis, from deltas of INFO
// commandstats (the scripts' usec) and INFO cpu (the main thread's user +
// system time, which adds reading, parsing and writing the commands).
// CeilingPerSec is 1e6 / CPUUsPerDecision: the decisions per second one
// shard's main thread sustains when it does nothing else.
type ServerTime struct {
	Decisions           int64   `json:"decisions"`
	ScriptCalls         int64   `json:"script_calls"`
	ScriptUsPerDecision float64 `json:"script_us_per_decision"`
	CPUUsPerDecision    float64 `json:"cpu_us_per_decision"`
	CeilingPerSec       float64 `json:"ceiling_decisions_per_second"`
}

func (s *ServerTime) finish(scriptUs, cpuUs float64) {
	if s.Decisions <= 0 {
		return
	}
	s.ScriptUsPerDecision = scriptUs / float64(s.Decisions)
	s.CPUUsPerDecision = cpuUs / float64(s.Decisions)
	if s.CPUUsPerDecision > 0 {
		s.CeilingPerSec = 1e6 / s.CPUUsPerDecision
	}
}

// nodeName is a master's address, the key of every per-node reading.
func nodeName(c *redis.Client) string { return c.Options().Addr }

// perNode runs read on every master and collects its value by node.
func perNode[T any](ctx context.Context, c redis.UniversalClient, read func(ctx context.Context, c *redis.Client) (T, error)) (map[string]T, error) {
	var mu sync.Mutex
	out := map[string]T{}
	err := eachMaster(ctx, c, func(ctx context.Context, c *redis.Client) error {
		v, err := read(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		out[nodeName(c)] = v
		mu.Unlock()
		return nil
	})
	return out, err
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// usedMemoryByNode is INFO memory used_memory of each master, read when
// the reading connection is loadgen's only one.
func (t *target) usedMemoryByNode(ctx context.Context) (map[string]int64, error) {
	var m map[string]int64
	err := t.with(ctx, func(c redis.UniversalClient) error {
		if err := t.quiesce(ctx, c); err != nil {
			return err
		}
		var err error
		m, err = perNode(ctx, c, func(ctx context.Context, c *redis.Client) (int64, error) {
			n, _, err := infoInt(ctx, c, "memory", "used_memory")
			return n, err
		})
		return err
	})
	return m, err
}

// countKeysByNode counts the keys under prefix on each master.
func (t *target) countKeysByNode(ctx context.Context, prefix string) (map[string]int64, error) {
	var m map[string]int64
	err := t.with(ctx, func(c redis.UniversalClient) error {
		var err error
		m, err = perNode(ctx, c, func(ctx context.Context, c *redis.Client) (int64, error) {
			iter := c.Scan(ctx, 0, prefix+"*", countBatch).Iterator()
			var k int64
			for iter.Next(ctx) {
				k++
			}
			return k, iter.Err()
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("loadgen: SCAN %s*: %w", prefix, err)
	}
	return m, nil
}

// rehashTimeout bounds the wait for Redis to finish growing its key
// tables: serverCron moves ~1 ms of entries every 100 ms, so a table of
// millions of keys can take seconds.
const rehashTimeout = 60 * time.Second

// waitRehashed waits until no master is moving its key tables to a larger
// one: mid-rehash both tables are allocated and used_memory over-counts.
// It needs DEBUG HTSTATS, enabled on loadgen's own servers only; elsewhere
// the settle time has to do.
func (t *target) waitRehashed(ctx context.Context) error {
	if !t.owned() {
		return nil
	}
	deadline := time.Now().Add(rehashTimeout)
	return t.with(ctx, func(c redis.UniversalClient) error {
		for {
			busy := false
			err := eachMaster(ctx, c, func(ctx context.Context, c *redis.Client) error {
				s, err := c.Do(ctx, "DEBUG", "HTSTATS", "0").Text()
				if err != nil {
					return nil // not enabled: nothing to wait for
				}
				if strings.Contains(s, "rehashing") {
					busy = true
				}
				return nil
			})
			if err != nil || !busy || time.Now().After(deadline) {
				return err
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
	})
}

// serverSample is one master's script and CPU counters at one moment.
type serverSample struct {
	scriptCalls int64
	scriptUs    int64
	cpuUs       float64
}

// readServerSample reads INFO commandstats and cpu on one master: every
// script command (EVAL, EVALSHA, FCALL and their read-only forms), and
// the main thread's CPU (the whole process's on Redis 6).
// A server without them (miniredis) reads as zero: no server time.
func readServerSample(ctx context.Context, c *redis.Client) (serverSample, error) {
	var out serverSample
	info := map[string]string{}
	for _, section := range []string{"commandstats", "cpu"} {
		s, err := c.Info(ctx, section).Result()
		var rerr redis.Error
		switch {
		case errors.As(err, &rerr):
			return out, nil
		case err != nil:
			return out, err
		}
		for k, v := range parseInfo(s) {
			info[k] = v
		}
	}
	for k, v := range info {
		if !strings.HasPrefix(k, "cmdstat_eval") && !strings.HasPrefix(k, "cmdstat_fcall") {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(val, 10, 64)
			switch name {
			case "calls":
				out.scriptCalls += n
			case "usec":
				out.scriptUs += n
			}
		}
	}
	user, sys := "used_cpu_user_main_thread", "used_cpu_sys_main_thread"
	if _, ok := info[user]; !ok {
		user, sys = "used_cpu_user", "used_cpu_sys"
	}
	for _, k := range []string{user, sys} {
		f, _ := strconv.ParseFloat(info[k], 64)
		out.cpuUs += f * 1e6
	}
	return out, nil
}

// serverMeter adds up, per master, what decisions cost on the server over
// the phases it brackets (begin ... end), and counts the decisions that
// went to each master (count, from the decision's user).
type serverMeter struct {
	shards  *shardMap
	n       []atomic.Int64
	scripts map[string]serverSample // accumulated deltas
	start   map[string]serverSample
}

func newServerMeter(m *shardMap) *serverMeter {
	return &serverMeter{shards: m, n: make([]atomic.Int64, len(m.nodes)), scripts: map[string]serverSample{}}
}

// count records one decision for user on the shard holding its keys.
// Naming them (UserKeys, CRC16) costs the timed loop, so a single server,
// one shard, skips it.
func (s *serverMeter) count(l *limiter.Limiter, user string) error {
	i := 0
	if len(s.shards.nodes) > 1 {
		keys, err := l.UserKeys(user)
		if err != nil {
			return err
		}
		i = s.shards.of(keys[0])
	}
	s.n[i].Add(1)
	return nil
}

func (s *serverMeter) begin(ctx context.Context, c redis.UniversalClient) error {
	var err error
	s.start, err = perNode(ctx, c, readServerSample)
	return err
}

func (s *serverMeter) end(ctx context.Context, c redis.UniversalClient) error {
	now, err := perNode(ctx, c, readServerSample)
	if err != nil {
		return err
	}
	for node, v := range now {
		a, b := s.scripts[node], s.start[node]
		a.scriptCalls += v.scriptCalls - b.scriptCalls
		a.scriptUs += v.scriptUs - b.scriptUs
		a.cpuUs += v.cpuUs - b.cpuUs
		s.scripts[node] = a
	}
	return nil
}

// result is each master's ServerTime, in shardMap order, and the total.
func (s *serverMeter) result() ([]ServerTime, ServerTime) {
	out := make([]ServerTime, len(s.shards.nodes))
	var total ServerTime
	var scriptUs, cpuUs float64
	for i, node := range s.shards.nodes {
		v := s.scripts[node]
		out[i] = ServerTime{Decisions: s.n[i].Load(), ScriptCalls: v.scriptCalls}
		out[i].finish(float64(v.scriptUs), v.cpuUs)
		total.Decisions += out[i].Decisions
		total.ScriptCalls += v.scriptCalls
		scriptUs += float64(v.scriptUs)
		cpuUs += v.cpuUs
	}
	total.finish(scriptUs, cpuUs)
	return out, total
}

// shardMap says which master holds a key: the key's slot and the
// Cluster's slot table. A single server is one shard.
type shardMap struct {
	nodes []string // sorted
	slot  [16384]uint16
}

// loadShardMap reads the masters and, on a Cluster, CLUSTER SLOTS.
func loadShardMap(ctx context.Context, c redis.UniversalClient) (*shardMap, error) {
	m := &shardMap{}
	names, err := perNode(ctx, c, func(ctx context.Context, c *redis.Client) (string, error) { return nodeName(c), nil })
	if err != nil {
		return nil, fmt.Errorf("loadgen: listing masters: %w", err)
	}
	for n := range names {
		m.nodes = append(m.nodes, n)
	}
	slices.Sort(m.nodes)
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return m, nil
	}
	//lint:ignore SA1019 CLUSTER SHARDS, its replacement, needs Redis 7; SLOTS works on 6 too
	ranges, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("loadgen: CLUSTER SLOTS: %w", err)
	}
	for _, r := range ranges {
		if len(r.Nodes) == 0 {
			continue
		}
		i := slices.Index(m.nodes, r.Nodes[0].Addr)
		if i < 0 {
			return nil, fmt.Errorf("loadgen: CLUSTER SLOTS names %s, not a master loadgen reaches", r.Nodes[0].Addr)
		}
		for s := r.Start; s <= r.End && s < 16384; s++ {
			m.slot[s] = uint16(i)
		}
	}
	return m, nil
}

// of is the index in nodes of the master holding key.
func (m *shardMap) of(key string) int {
	if len(m.nodes) <= 1 {
		return 0
	}
	return int(m.slot[keySlot(key)])
}

// keySlot is Redis Cluster's HASH_SLOT: CRC16/XMODEM, modulo 16384, of the
// key's hash tag (the first non-empty {...}) or of the whole key.
func keySlot(key string) uint16 {
	tag := key
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			tag = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// spread is max/min keys per shard: 1.00 is perfectly even.
func spread(shards []ShardResult) float64 {
	if len(shards) == 0 {
		return 0
	}
	lo, hi := shards[0].Keys, shards[0].Keys
	for _, s := range shards[1:] {
		lo, hi = min(lo, s.Keys), max(hi, s.Keys)
	}
	if lo <= 0 {
		return 0
	}
	return float64(hi) / float64(lo)
}

// replicationTimeout bounds the wait for replicas to catch up.
const replicationTimeout = 30 * time.Second

// replicaMemory is INFO used_memory summed over every replica, read once
// each replica has every write its master has (offsets equal). 0 without
// replicas.
func (t *target) replicaMemory(ctx context.Context) (int64, error) {
	if t.replicas == 0 {
		return 0, nil
	}
	var total int64
	err := t.with(ctx, func(c redis.UniversalClient) error {
		cc, ok := c.(*redis.ClusterClient)
		if !ok {
			return nil
		}
		deadline := time.Now().Add(replicationTimeout)
		for {
			behind := false
			err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
				s, err := m.Info(ctx, "replication").Result()
				if err != nil {
					return err
				}
				info := parseInfo(s)
				want, _ := strconv.ParseInt(info["master_repl_offset"], 10, 64)
				for k, v := range info {
					if !strings.HasPrefix(k, "slave") || !strings.Contains(v, "offset=") {
						continue
					}
					_, off, _ := strings.Cut(v, "offset=")
					off, _, _ = strings.Cut(off, ",")
					if n, _ := strconv.ParseInt(off, 10, 64); n < want {
						behind = true
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if !behind || time.Now().After(deadline) {
				break
			}
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return err
			}
		}
		// Replicas grow their key tables on their own schedule, as masters do.
		for busy := true; busy && time.Now().Before(deadline); {
			busy = false
			err := cc.ForEachSlave(ctx, func(ctx context.Context, r *redis.Client) error {
				s, err := r.Do(ctx, "DEBUG", "HTSTATS", "0").Text()
				if err == nil && strings.Contains(s, "rehashing") {
					busy = true
				}
				return nil
			})
			if err != nil {
				return err
			}
			if err := sleep(ctx, settleTime); err != nil {
				return err
			}
		}
		var mu sync.Mutex
		return cc.ForEachSlave(ctx, func(ctx context.Context, r *redis.Client) error {
			n, _, err := infoInt(ctx, r, "memory", "used_memory")
			mu.Lock()
			total += n
			mu.Unlock()
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("loadgen: replicas' INFO: %w", err)
	}
	return total, nil
}

// fillBacklogs writes and deletes filler keys under prefix until every
// master's replication backlog is full (repl_backlog_histlen reaches
// repl-backlog-size). Redis 7 grows the backlog, on masters and replicas,
// as the write stream flows; left empty it would land in the first test's
// memory figures as up to 1 MB per shard.
func (t *target) fillBacklogs(ctx context.Context, prefix string) error {
	if t.replicas == 0 {
		return nil
	}
	filler := strings.Repeat("x", 64<<10)
	return t.with(ctx, func(c redis.UniversalClient) error {
		for i := 0; ; i++ {
			full := true
			err := eachMaster(ctx, c, func(ctx context.Context, m *redis.Client) error {
				s, err := m.Info(ctx, "replication").Result()
				if err != nil {
					return err
				}
				info := parseInfo(s)
				have, _ := strconv.ParseInt(info["repl_backlog_histlen"], 10, 64)
				size, _ := strconv.ParseInt(info["repl_backlog_size"], 10, 64)
				if have < size {
					full = false
				}
				return nil
			})
			if err != nil || full {
				return err
			}
			if i > 10_000 {
				return errors.New("loadgen: the replication backlogs do not fill")
			}
			key := fmt.Sprintf("%sfill:%d", prefix, i)
			if err := c.Set(ctx, key, filler, 0).Err(); err != nil {
				return err
			}
			if err := c.Unlink(ctx, key).Err(); err != nil {
				return err
			}
		}
	})
}
