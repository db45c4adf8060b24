package limiter

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replica acknowledgement (Config.WaitReplicas): Redis replicates
// asynchronously, so a master that crashes right after admitting a user
// may take that admission with it, and the replica promoted in its place
// (Sentinel, Cluster) admits the user again: above the limit. With
// WaitReplicas > 0 the per-user policy sends WAIT WaitReplicas WaitTimeout
// in the same pipeline as its decision script, on the same connection, so
// the reply says whether that many replicas hold the decision.
//
// What it guarantees: an Allowed decision that is not Degraded has reached
// WaitReplicas replicas, so a failover to one of them keeps it (Redis's
// WAIT caveat applies: a replica that acknowledged and then lost its data,
// or a failover that promotes a replica which did not acknowledge, can
// still lose it). An admission that fewer replicas acknowledged within
// WaitTimeout comes back as an outage (ErrReplicaAck, which wraps
// ErrRedisUnavailable), so OnRedisError decides: FailClosed denies,
// FailOpen allows (and may over-admit), FailLocal counts in-process.
// Denials need no acknowledgement and are returned as Redis gave them
// (AllowMany packs users into one script call: a call that admits anyone
// needs the acknowledgement for all its users).
//
// What it does not: the other policies (Backoff, Bucket, Slots) do not
// wait; the master has already counted an unacknowledged admission (the
// user's count is never lower than what was admitted); and with no
// replica reachable, every admission waits WaitTimeout and then degrades.
// It costs one replica round trip per decision (see docs/reliability.md).

// ErrReplicaAck means fewer replicas than Config.WaitReplicas acknowledged
// an admission within Config.WaitTimeout. It wraps ErrRedisUnavailable, so
// IsUnavailable reports it and the FailureMode applies.
var ErrReplicaAck = fmt.Errorf("limiter: too few replicas acknowledged the decision: %w", ErrRedisUnavailable)

// maxWaitReplicas bounds Config.WaitReplicas; more replicas than this per
// master is not a deployment this limiter targets.
const maxWaitReplicas = 16

// checkReplicaAck validates WaitReplicas and WaitTimeout (Config.Validate).
func checkReplicaAck(errs *[]error, c Config) {
	checkInt(errs, "WaitReplicas", c.WaitReplicas, 0, maxWaitReplicas)
	if c.WaitTimeout < 0 || c.WaitTimeout > 0 && c.WaitTimeout < time.Millisecond {
		*errs = append(*errs, fieldError("WaitTimeout", "must be 0 (RedisTimeout/2) or at least 1ms, got %v", c.WaitTimeout))
	} else if c.WaitTimeout >= c.RedisTimeout && c.RedisTimeout > 0 {
		*errs = append(*errs, fieldError("WaitTimeout", "must be shorter than RedisTimeout (%v), got %v", c.RedisTimeout, c.WaitTimeout))
	}
}

// waitTimeout is WAIT's timeout: Config.WaitTimeout or RedisTimeout/2,
// never 0 (which would make WAIT block until a replica answers).
func (l *Limiter) waitTimeout() time.Duration {
	if l.cfg.WaitTimeout > 0 {
		return l.cfg.WaitTimeout
	}
	return max(l.cfg.RedisTimeout/2, time.Millisecond)
}

// evalAcked is evalPipeline followed by WAIT on each node: the calls
// going to one node share a pipeline (one connection) ending with WAIT,
// which then covers all their writes. Each call gets its result or error;
// an admission the replicas did not acknowledge gets ErrReplicaAck.
func (l *Limiter) evalAcked(parent context.Context, s script, calls []*evalCall) {
	ctx, cancel := l.bound(parent)
	defer cancel()
	var order []scriptNode
	groups := map[scriptNode][]*evalCall{}
	for _, c := range l.liveCalls(ctx, s, calls) {
		var node scriptNode = l.rdb
		if cc, ok := l.rdb.(*redis.ClusterClient); ok {
			m, err := cc.MasterForKey(ctx, c.keys[0])
			if err != nil {
				c.err = wrapErr(s.name, c.keys[0], c.h, err)
				continue
			}
			node = m
		}
		if _, seen := groups[node]; !seen {
			order = append(order, node)
		}
		groups[node] = append(groups[node], c)
	}
	for _, node := range order {
		l.ackPipeline(ctx, parent, s, node, groups[node])
	}
}

// ackPipeline runs s for calls on node, then WAIT, in one pipeline,
// retrying once the calls that met NOSCRIPT.
func (l *Limiter) ackPipeline(ctx, parent context.Context, s script, node scriptNode, calls []*evalCall) {
	start := time.Now()
	timeout := l.waitTimeout()
	evalRetry(ctx, s, node, calls, func(pipe redis.Pipeliner) func(*evalCall) {
		// Pipeliner has no Wait method; Do sends the same command.
		wait := pipe.Do(ctx, "wait", l.cfg.WaitReplicas, ms(timeout))
		return func(c *evalCall) {
			if !admits(c.res) {
				return
			}
			acked, werr := wait.Int64()
			switch {
			case werr != nil:
				c.res, c.err = nil, wrapErr(s.name+" WAIT", c.keys[0], c.h, werr)
			case acked < int64(l.cfg.WaitReplicas):
				c.res, c.err = nil, fmt.Errorf("limiter: %s on %q: %w (%d of %d within %v)", s.name, c.keys[0], ErrReplicaAck, acked, l.cfg.WaitReplicas, timeout)
			}
		}
	})
	l.observeRedis(s.name+"_acked", start, nodeVerdicts(parent, calls))
}

// admits reports whether a user_allow reply (5 values per user) admits
// any of its users: only admissions need the replicas.
func admits(r []int64) bool {
	for i := 0; i+4 < len(r); i += 5 {
		if r[i] == 1 {
			return true
		}
	}
	return false
}
