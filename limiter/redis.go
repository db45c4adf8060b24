package limiter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/scripts/lua"
)

// The one path of every round trip to Redis. Each call is bounded by
// Config.RedisTimeout and by its caller's context, skips Redis at once
// while the node serving its key is marked down (health.go), is reported
// to the Observer, updates the node's health, and comes back wrapped as
// "limiter: <op> on <quoted key>: <Redis error>".

// script is a Lua script from scripts/lua with the name used in metrics.
type script struct {
	name  string
	src   string // for EVAL after a NOSCRIPT, where Script.Run is not used
	reply int    // integers in its reply; 0 when that varies
	*redis.Script
}

// newScript loads file, whose reply (its header's Returns) is an array of
// reply integers, or of a varying number when reply is 0.
func newScript(file string, reply int) script {
	src := lua.Source(file)
	return script{name: strings.TrimSuffix(file, ".lua"), src: src, reply: reply, Script: redis.NewScript(src)}
}

// call runs fn, one Redis operation named op on key (the first key it
// touches, which picks the node on a Cluster), on the one call path: fn
// gets a context bounded by RedisTimeout (7/8 of it at the least: see
// bound) and by ctx, and must honour it.
// The error, if any, wraps fn's (see wrapErr), and ErrRedisUnavailable
// when the node is marked down (fn is then not called). A policy decides
// what an outage means with degrade.
func (l *Limiter) call(ctx context.Context, op, key string, fn func(context.Context) error) error {
	// The timeout covers finding the node too: a Cluster client may have
	// to load its slot map first.
	tctx, cancel := l.bound(ctx)
	defer cancel()
	h := l.healthOf(tctx, key)
	if err := h.check(); err != nil {
		return fmt.Errorf("limiter: %s on %q: %w", op, key, err)
	}
	start := time.Now()
	err := fn(tctx)
	l.observeRedis(op, start, err)
	if err == nil {
		h.ok()
		return nil
	}
	err = wrapErr(op, key, h, err)
	h.failed(ctx, err)
	return err
}

// bound returns ctx bounded by RedisTimeout, as context.WithTimeout does,
// but without its four allocations (a context, a timer, a channel, a
// cancel func) where it can: a ctx whose own deadline comes first is
// bounded already, and context.Background, what a bot mostly passes, gets
// a context shared with the calls around it (sharedTimeout).
func (l *Limiter) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	d := l.cfg.RedisTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, noCancel
	}
	if ctx == context.Background() {
		return l.timeouts.get(time.Now(), d), noCancel
	}
	return context.WithTimeout(ctx, d)
}

func noCancel() {}

// sharedTimeout hands out a context.Background bounded by a timeout to
// every call starting within an eighth of that timeout of the first that
// asked: each such call is bounded by 7/8 to 8/8 of the timeout, and they
// share one context, timer and channel. Its contexts are never cancelled
// but by their deadline, when their timer is released.
type sharedTimeout struct {
	p atomic.Pointer[timeoutCtx]
}

type timeoutCtx struct {
	ctx      context.Context
	deadline time.Time
	cancel   context.CancelFunc // kept for vet; the deadline ends it
}

func (s *sharedTimeout) get(now time.Time, d time.Duration) context.Context {
	if t := s.p.Load(); t != nil && t.deadline.Sub(now) >= d-d/8 {
		return t.ctx
	}
	t := &timeoutCtx{deadline: now.Add(d)}
	t.ctx, t.cancel = context.WithDeadline(context.Background(), t.deadline)
	s.p.Store(t)
	return t.ctx
}

// run evaluates s on the call path (EVALSHA, then EVAL after a NOSCRIPT)
// and returns its integer array reply.
func (l *Limiter) run(ctx context.Context, s script, keys []string, args ...any) ([]int64, error) {
	var res any
	err := l.call(ctx, s.name, keys[0], func(ctx context.Context) (err error) {
		res, err = s.Run(ctx, l.rdb, keys, args...).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.int64s(res)
}

// wrapErr wraps err, a failed op on key, as "limiter: <op> on <quoted
// key>: ...", adding ErrForeignKey for a key of the wrong type and the
// READONLY verdict (readOnly) for a write refused by a replica.
func wrapErr(op, key string, h *health, err error) error {
	switch {
	case isRedisReply(err, "WRONGTYPE"):
		return fmt.Errorf("limiter: %s on %q: %w: %w", op, key, ErrForeignKey, err)
	case isRedisReply(err, "READONLY"):
		return fmt.Errorf("limiter: %s on %q: %w: %w", op, key, h.readOnly(time.Now()), err)
	}
	return fmt.Errorf("limiter: %s on %q: %w", op, key, err)
}

// int64s converts s's array reply, checking its length.
func (s script) int64s(res any) ([]int64, error) {
	arr, ok := res.([]any)
	if !ok {
		return nil, fmt.Errorf("limiter: %s replied %T, want an array", s.name, res)
	}
	if s.reply > 0 && len(arr) != s.reply {
		return nil, fmt.Errorf("limiter: %s replied %d values, want %d", s.name, len(arr), s.reply)
	}
	out := make([]int64, len(arr))
	for i, v := range arr {
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("limiter: %s reply[%d] is %T, want an integer", s.name, i, v)
		}
		out[i] = n
	}
	return out, nil
}

// evalCall is one script evaluation in a pipeline.
type evalCall struct {
	keys []string
	args []any
	res  []int64
	err  error
	h    *health // of the node serving keys[0]
}

// evalPipeline evaluates s for every call in one pipeline, on the call
// path (on a Cluster, go-redis splits it per node; each call stays one
// atomic script). Calls that meet NOSCRIPT (a restart, SCRIPT FLUSH) are
// retried once after the script is loaded. Each call gets its own result
// or error.
func (l *Limiter) evalPipeline(parent context.Context, s script, calls []*evalCall) {
	ctx, cancel := l.bound(parent)
	defer cancel()
	live := l.liveCalls(ctx, s, calls)
	if len(live) == 0 {
		return
	}
	start := time.Now()
	evalRetry(ctx, s, l.rdb, live, nil)
	l.observeRedis(s.name+"_pipeline", start, nodeVerdicts(parent, live))
}

// liveCalls sets each call's health, that of the node serving its first
// key, and returns the calls whose node is not marked down; the others
// get their error (ErrRedisUnavailable) and are not sent.
func (l *Limiter) liveCalls(ctx context.Context, s script, calls []*evalCall) []*evalCall {
	live := make([]*evalCall, 0, len(calls))
	for _, c := range calls {
		c.h = l.healthOf(ctx, c.keys[0])
		if err := c.h.check(); err != nil {
			c.err = fmt.Errorf("limiter: %s on %q: %w", s.name, c.keys[0], err)
			continue
		}
		live = append(live, c)
	}
	return live
}

// nodeVerdicts gives each node the calls sent to it one verdict, so that
// a single stall counts as one timeout, not one per call it carried: down
// (health.failed) after its first outage, else up. A missing replica
// acknowledgement (ErrReplicaAck) is no outage: the master answered, its
// replicas lag. It returns the calls' first error, for the Observer.
func nodeVerdicts(parent context.Context, calls []*evalCall) error {
	var firstErr error
	verdict := map[*health]error{} // the node's first outage error, or nil
	for _, c := range calls {
		if c.err != nil && firstErr == nil {
			firstErr = c.err
		}
		if _, seen := verdict[c.h]; !seen {
			verdict[c.h] = nil
		}
		if verdict[c.h] == nil && c.err != nil && IsUnavailable(c.err) && !errors.Is(c.err, ErrReplicaAck) {
			verdict[c.h] = c.err
		}
	}
	for h, err := range verdict {
		if err != nil {
			h.failed(parent, err)
		} else {
			h.ok()
		}
	}
	return firstErr
}

// scriptNode is a node evalRetry can pipeline to and load a script on: a
// plain, Sentinel or Cluster client, or one Cluster master.
type scriptNode interface {
	Pipeline() redis.Pipeliner
	redis.Scripter
}

// evalRetry evaluates s for every call in one pipeline on node, then once
// more, after loading s, for the calls that met NOSCRIPT (a restart,
// SCRIPT FLUSH). tail, if set, adds its commands to each pipeline after
// the calls and returns a check run on each call that got a result.
func evalRetry(ctx context.Context, s script, node scriptNode, calls []*evalCall, tail func(redis.Pipeliner) func(*evalCall)) {
	pending := calls
	for attempt := 0; attempt < 2 && len(pending) > 0; attempt++ {
		pipe := node.Pipeline()
		cmds := make([]*redis.Cmd, len(pending))
		for i, c := range pending {
			cmds[i] = s.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		var check func(*evalCall)
		if tail != nil {
			check = tail(pipe)
		}
		_, _ = pipe.Exec(ctx)
		var again []*evalCall
		for i, c := range pending {
			res, err := cmds[i].Result()
			if attempt == 0 && isNoScript(err) {
				again = append(again, c)
				continue
			}
			if err != nil {
				c.err = wrapErr(s.name, c.keys[0], c.h, err)
				continue
			}
			if c.res, c.err = s.int64s(res); c.err == nil && check != nil {
				check(c)
			}
		}
		if len(again) > 0 {
			if err := s.Load(ctx, node).Err(); err != nil {
				for _, c := range again {
					c.err = fmt.Errorf("limiter: loading %s: %w", s.name, err)
				}
				break
			}
		}
		pending = again
	}
}

// isNoScript reports a NOSCRIPT reply: the script is not in Redis's cache.
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// degrade is the one FailureMode switch. When err is an outage (isOutage:
// Redis out of reach, the caller's context still live) it returns mode's
// decision, marked Degraded and reported to the Observer under policy,
// with a nil error: FailOpen allows (Remaining Unlimited), FailClosed
// denies with ReasonRedisDown for redisRetryInterval, FailLocal asks
// local, the policy's in-process fallback. Any other error comes back as
// it is, with a zero Decision.
func (l *Limiter) degrade(ctx context.Context, policy string, mode FailureMode, err error, local func() Decision) (Decision, error) {
	if !isOutage(ctx, err) {
		return Decision{}, err
	}
	return l.observe(policy, degraded(mode, local)), nil
}

// degraded is mode's decision while Redis is out of reach, marked
// Degraded (see degrade), for a caller that reports rather than decides
// and so observes nothing.
func degraded(mode FailureMode, local func() Decision) Decision {
	var d Decision
	switch mode {
	case FailOpen:
		d = Decision{Allowed: true, Remaining: Unlimited}
	case FailClosed:
		d = Decision{Reason: ReasonRedisDown, RetryAfter: redisRetryInterval, ResetAfter: redisRetryInterval}
	default:
		d = local()
		if !d.Allowed {
			// Every fallback's denial waits at least 1 ms, as Redis's do:
			// an in-process clock counts down to the nanosecond.
			atLeastMinWait(&d)
		}
	}
	d.Degraded = true
	return d
}

// ms converts Go durations to the whole milliseconds the scripts use.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// fromMs converts a script's milliseconds back.
func fromMs(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
