package limiter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Redis evicts keys when it reaches maxmemory, according to its
// maxmemory-policy. Every Floodgate key carries a TTL, so volatile-*
// policies may evict them as readily as allkeys-* ones: the limits held
// in them are then silently forgotten and users are admitted again inside
// their cooldown. Only noeviction keeps them; a full Redis then refuses
// writes with an OOM error, which the policies treat as an outage (their
// FailureMode), since no decision can be shared until memory is freed.
//
// CheckEviction reads the settings once (INFO memory and INFO stats, one
// pipelined round trip per master); New runs it in the background, and
// the sidecar at each /readyz and metrics scrape. No decision pays for it.

// Eviction is what CheckEviction found about Redis's memory settings.
//
// Worked numbers: maxmemory 4mb with volatile-lru gives Policy
// "volatile-lru", MaxMemory 4194304, Unsafe true; after 30,000 users were
// admitted on it, EvictedKeys read 36,000 and about 25,000 users were
// admitted again inside their cooldown.
type Eviction struct {
	// Policy is maxmemory-policy, e.g. "noeviction" or "allkeys-lru". On a
	// Cluster it is that of Node.
	Policy string
	// MaxMemory is maxmemory in bytes; 0 means no limit (Redis never
	// evicts, and grows until the operating system stops it).
	MaxMemory int64
	// Unsafe is true when Redis can evict Floodgate's keys: MaxMemory is
	// set and Policy is not noeviction. On a Cluster, when any master can.
	Unsafe bool
	// EvictedKeys is INFO stats evicted_keys: keys (of any program)
	// evicted since Redis started, summed over the masters of a Cluster.
	EvictedKeys int64
	// Node is the address of the master Policy and MaxMemory describe on
	// a Cluster (the first unsafe one, else the first): empty otherwise.
	Node string
	// Masters is how many servers were read: 1, or a Cluster's masters.
	Masters int
}

// Warning returns the operator's warning, with the fix, when e is
// Unsafe, and "" otherwise.
func (e Eviction) Warning() string {
	if !e.Unsafe {
		return ""
	}
	where := "Redis"
	if e.Node != "" {
		where = "Redis master " + e.Node
	}
	return fmt.Sprintf("limiter: %s has maxmemory-policy %s with maxmemory %d bytes: "+
		"when full it evicts Floodgate's keys (all carry a TTL) and rate limits are silently forgotten "+
		"(%d keys evicted so far); fix: CONFIG SET maxmemory-policy noeviction (and in redis.conf or the "+
		"managed service's parameter group), or give Floodgate a Redis of its own with room to spare",
		where, e.Policy, e.MaxMemory, e.EvictedKeys)
}

// canEvict reports whether Redis at maxmemory with policy may evict keys
// that carry a TTL, which every Floodgate key does.
func canEvict(policy string, maxMemory int64) bool {
	return maxMemory > 0 && policy != "noeviction"
}

// CheckEviction reads maxmemory, maxmemory-policy and evicted_keys from
// rdb (INFO memory and INFO stats; on a Cluster, from every master) and
// reports whether Redis can evict Floodgate's keys. A user whose ACL does
// not grant INFO gets maxmemory and the policy from CONFIG GET if that is
// granted instead, else an error naming the grant needed. It sends one
// pipelined round trip per master and no decision depends on it.
func CheckEviction(ctx context.Context, rdb redis.UniversalClient) (Eviction, error) {
	if rdb == nil {
		return Eviction{}, errors.New("limiter: CheckEviction needs a Redis client, got nil")
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return checkNode(ctx, rdb)
	}
	var (
		mu    sync.Mutex
		nodes []Eviction
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		e, err := checkNode(ctx, m)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Options().Addr, err)
		}
		e.Node = m.Options().Addr
		mu.Lock()
		nodes = append(nodes, e)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return Eviction{}, fmt.Errorf("limiter: checking maxmemory-policy on the Cluster: %w", err)
	}
	if len(nodes) == 0 {
		return Eviction{}, errors.New("limiter: checking maxmemory-policy: the Cluster has no master")
	}
	// The first unsafe master (by address, so the answer is stable)
	// describes the Cluster.
	var out Eviction
	for _, n := range nodes {
		out.EvictedKeys += n.EvictedKeys
		if out.Node == "" || (n.Unsafe && !out.Unsafe) || (n.Unsafe == out.Unsafe && n.Node < out.Node) {
			out.Node, out.Policy, out.MaxMemory, out.Unsafe = n.Node, n.Policy, n.MaxMemory, n.Unsafe
		}
	}
	out.Masters = len(nodes)
	return out, nil
}

// checkNode reads one server.
func checkNode(ctx context.Context, c redis.Cmdable) (Eviction, error) {
	pipe := c.Pipeline()
	mem := pipe.Info(ctx, "memory")
	stats := pipe.Info(ctx, "stats")
	_, _ = pipe.Exec(ctx)
	e := Eviction{Masters: 1}
	if err := mem.Err(); err != nil {
		if !isRedisReply(err, "NOPERM") {
			return Eviction{}, fmt.Errorf("limiter: INFO memory: %w", err)
		}
		// No INFO: CONFIG GET, which ACL users often lack too.
		cfg, cerr := c.ConfigGet(ctx, "maxmemory*").Result()
		if cerr != nil {
			return Eviction{}, fmt.Errorf("limiter: reading maxmemory-policy needs +info (or +config|get) in the ACL: %w", err)
		}
		e.Policy = cfg["maxmemory-policy"]
		e.MaxMemory, _ = strconv.ParseInt(cfg["maxmemory"], 10, 64)
	} else {
		f := infoFields(mem.Val())
		e.Policy = f["maxmemory_policy"]
		e.MaxMemory, _ = strconv.ParseInt(f["maxmemory"], 10, 64)
	}
	if e.Policy == "" {
		return Eviction{}, errors.New("limiter: Redis did not report maxmemory_policy")
	}
	if stats.Err() == nil {
		e.EvictedKeys, _ = strconv.ParseInt(infoFields(stats.Val())["evicted_keys"], 10, 64)
	}
	e.Unsafe = canEvict(e.Policy, e.MaxMemory)
	return e, nil
}

// infoFields parses INFO's "name:value" lines.
func infoFields(info string) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			f[k] = v
		}
	}
	return f
}

// EvictionObserver is an Observer that also hears what each eviction
// check found (metrics.Observer is one): the Limiter calls it after the
// check New starts and after every CheckEviction, never on the decision
// path.
type EvictionObserver interface {
	ObserveEviction(e Eviction, err error)
}

// evictionState is the Limiter's last eviction check.
type evictionState struct {
	mu     sync.Mutex
	last   Eviction
	err    error
	done   bool
	warned string // the settings last warned about, so a scrape does not repeat it
	denied bool   // the ACL's refusal was logged
}

// CheckEviction reads Redis's memory settings now (the package-level
// CheckEviction on the Limiter's client), remembers them for
// EvictionRisk, reports them to the Observer if it is an
// EvictionObserver, and logs Warning through log/slog's default logger
// when Redis can evict Floodgate's keys (once per setting: not again while
// the policy stays the same), or once when the ACL denies the check.
func (l *Limiter) CheckEviction(ctx context.Context) (Eviction, error) {
	if err := l.usable(); err != nil {
		return Eviction{}, err
	}
	e, err := CheckEviction(ctx, l.rdb)
	l.eviction.mu.Lock()
	l.eviction.last, l.eviction.err, l.eviction.done = e, err, true
	warn := e.Warning()
	settings := fmt.Sprint(e.Node, " ", e.Policy, " ", e.MaxMemory)
	logIt := warn != "" && settings != l.eviction.warned
	if err == nil {
		l.eviction.warned = settings
	}
	// An ACL without INFO is the operator's to fix; other failures (Redis
	// not up yet) show in EvictionRisk and the next check.
	logDenied := err != nil && isRedisReply(err, "NOPERM") && !l.eviction.denied
	l.eviction.denied = l.eviction.denied || logDenied
	l.eviction.mu.Unlock()
	if logIt {
		slog.Warn(warn, "maxmemory_policy", e.Policy, "maxmemory", e.MaxMemory, "evicted_keys", e.EvictedKeys)
	}
	if logDenied {
		slog.Warn("limiter: cannot tell whether Redis may evict Floodgate's keys: " + err.Error())
	}
	if eo, ok := l.obs.(EvictionObserver); ok {
		eo.ObserveEviction(e, err)
	}
	return e, err
}

// EvictionRisk returns what the last eviction check found (the one New
// starts, or a later CheckEviction) without contacting Redis; the error
// is that check's, or ErrEvictionUnchecked before any has finished.
func (l *Limiter) EvictionRisk() (Eviction, error) {
	if err := l.usable(); err != nil {
		return Eviction{}, err
	}
	l.eviction.mu.Lock()
	defer l.eviction.mu.Unlock()
	if !l.eviction.done {
		return Eviction{}, ErrEvictionUnchecked
	}
	return l.eviction.last, l.eviction.err
}

// ErrEvictionUnchecked: EvictionRisk was called before the first eviction
// check finished.
var ErrEvictionUnchecked = errors.New("limiter: Redis's maxmemory-policy has not been read yet")

// checkAtStart turns off New's eviction check in the package's unit
// tests, whose command counts it would disturb; eviction_test.go turns
// it on.
var checkAtStart atomic.Bool

func init() { checkAtStart.Store(true) }

// startEvictionCheck runs the first CheckEviction in the background,
// bounded by RedisTimeout, so that New does not wait for Redis.
func (l *Limiter) startEvictionCheck() {
	if !checkAtStart.Load() {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.RedisTimeout)
		defer cancel()
		_, _ = l.CheckEviction(ctx)
	}()
}

// IsOutOfMemory reports whether err holds Redis's OOM reply ("OOM command
// not allowed when used memory > 'maxmemory'"): Redis under the
// noeviction policy is full and refuses writes. The policies treat it as
// an outage (IsUnavailable).
func IsOutOfMemory(err error) bool {
	return err != nil && isRedisReply(err, oomPrefix)
}

// oomPrefix starts Redis's reply to a write it has no memory for.
const oomPrefix = "OOM command not allowed"
