package limiter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// evalCall is one script evaluation in a pipeline.
type evalCall struct {
	keys []string
	args []any
	res  []int64
	err  error
	h    *health // of the node serving keys[0]
}

// evalPipeline evaluates s for every call in one pipeline (on a Cluster,
// go-redis splits it per node; each call stays one atomic script). Calls
// that meet NOSCRIPT (a restart, SCRIPT FLUSH) are retried once after the
// script is loaded. Each call gets its own result or error.
func (l *Limiter) evalPipeline(parent context.Context, s script, calls []*evalCall) {
	ctx, cancel := context.WithTimeout(parent, l.cfg.RedisTimeout)
	defer cancel()
	live := make([]*evalCall, 0, len(calls))
	for _, c := range calls {
		c.h = l.healthOf(ctx, c.keys[0])
		if err := c.h.check(); err != nil {
			c.err = fmt.Errorf("limiter: %s on %s: %w", s.name, c.keys[0], err)
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	start := time.Now()
	pending := live
	for attempt := 0; attempt < 2 && len(pending) > 0; attempt++ {
		pipe := l.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(pending))
		for i, c := range pending {
			cmds[i] = s.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
		var again []*evalCall
		for i, c := range pending {
			res, err := cmds[i].Result()
			if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
				again = append(again, c)
				continue
			}
			if err != nil {
				c.err = fmt.Errorf("limiter: %s on %s: %w", s.name, c.keys[0], err)
				continue
			}
			c.res, c.err = int64s(s.name, res)
		}
		if len(again) > 0 {
			if err := s.Load(ctx, l.rdb).Err(); err != nil {
				for _, c := range again {
					c.err = fmt.Errorf("limiter: loading %s: %w", s.name, err)
				}
				break
			}
		}
		pending = again
	}
	// One verdict per node and pipeline: a single stall must count as one
	// timeout, not one per call it carried.
	var firstErr error
	verdict := map[*health]error{} // the node's first outage error, or nil
	for _, c := range live {
		if c.err != nil && firstErr == nil {
			firstErr = c.err
		}
		if _, seen := verdict[c.h]; !seen {
			verdict[c.h] = nil
		}
		if verdict[c.h] == nil && c.err != nil && IsUnavailable(c.err) {
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
	if l.obs != nil {
		l.obs.ObserveRedis(s.name+"_pipeline", time.Since(start), firstErr)
	}
}

// AllowMany decides the requests of users (one request each, in order) in
// one pipelined round trip: on a Cluster, one per node. Each user's
// decision is atomic on its own, exactly as Allow's; a user listed twice
// makes two requests. Repeat denials come from the local cache as in
// Allow.
//
// Every id is validated first: one bad id fails the whole call with
// ErrInvalidUser, naming its index, and nil decisions, before anything
// reaches Redis. When Redis answers with an error for some users, their
// decisions are zero (not allowed), the error names each of them, and the
// other decisions stand: they were counted. Outages follow
// Config.OnRedisError per user, with a nil error.
func (l *Limiter) AllowMany(ctx context.Context, users []string) ([]Decision, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	for i, u := range users {
		if err := validUser(u); err != nil {
			return nil, fmt.Errorf("%w (users[%d])", err, i)
		}
	}
	out := make([]Decision, len(users))
	if l.cfg.UserCooldown == 0 && l.cfg.MaxRequestsPerUserHour == 0 {
		for i := range out {
			out[i] = l.observe(PolicyUser, Decision{Allowed: true, Remaining: Unlimited})
		}
		return out, nil
	}
	sent := time.Now()
	ask := make([]string, 0, len(users))
	index := make([]int, 0, len(users))
	for i, u := range users {
		if l.cache != nil {
			if d, ok := l.cache.get(u, sent); ok {
				out[i] = l.observe(PolicyUser, d)
				continue
			}
		}
		ask = append(ask, u)
		index = append(index, i)
	}
	replies := make([]userReply, len(ask))
	l.decideRedis(ctx, ask, replies)
	var errs []error
	for j, rep := range replies {
		i := index[j]
		d, err := l.userResult(ctx, users[i], sent, rep.r, rep.err)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w (users[%d])", err, i))
		}
		out[i] = d
	}
	return out, errors.Join(errs...)
}

// userReply is user_allow's five integers for one request, or its error.
type userReply struct {
	r   []int64
	err error
}

// maxKeysPerScript bounds one user_allow call: 128 decisions keep Redis
// busy for about a millisecond, short enough not to stall other clients.
const maxKeysPerScript = 128

// decideRedis asks Redis for one decision per entry of users, in order,
// filling out. On a single node (or Sentinel) it packs up to
// maxKeysPerScript users into one script call, which saves the per-call
// cost of EVALSHA and of the protocol on both sides; on a Cluster, where a
// script's keys must share a slot, each user is its own call, and go-redis
// sends each node its part of the pipeline.
func (l *Limiter) decideRedis(ctx context.Context, users []string, out []userReply) {
	per := 1
	if l.multiKey {
		per = maxKeysPerScript
	}
	calls := make([]*evalCall, 0, (len(users)+per-1)/per)
	for start := 0; start < len(users); start += per {
		chunk := users[start:min(start+per, len(users))]
		keys := make([]string, len(chunk))
		for i, u := range chunk {
			keys[i] = l.userKey(u)
		}
		calls = append(calls, &evalCall{keys: keys, args: l.userArgs})
	}
	if len(calls) == 1 {
		c := calls[0]
		c.res, c.err = l.run(ctx, userAllow, c.keys, c.args...)
	} else {
		l.evalPipeline(ctx, userAllow, calls)
	}
	i := 0
	for _, c := range calls {
		if c.err == nil && len(c.res) != 5*len(c.keys) {
			c.err = fmt.Errorf("limiter: user_allow replied %d values for %d keys", len(c.res), len(c.keys))
		}
		for k := range c.keys {
			if c.err != nil {
				out[i] = userReply{err: c.err}
			} else {
				out[i] = userReply{r: c.res[5*k : 5*k+5]}
			}
			i++
		}
	}
}

// batcher coalesces concurrent Allow calls of one Limiter into pipelines,
// like a database's group commit: up to maxInflight calls go to Redis on
// their own; callers arriving while those are in flight queue, and when a
// flight lands its caller hands the queue to the first waiter, which sends
// it as one pipeline. A lone caller never waits for anyone, so latency at
// low load is a plain round trip; under load, N callers share far fewer
// round trips and syscalls on both sides of the socket.
type batcher struct {
	mu       sync.Mutex
	inflight int
	queue    []*queuedCall
}

type queuedCall struct {
	user  string
	reply userReply
	done  chan struct{}
	batch []*queuedCall // set on the leader of a batch
}

const (
	maxInflight = 4
	maxBatch    = 2 * maxKeysPerScript
)

// allowRedis decides one request of user through the batcher.
func (l *Limiter) allowRedis(ctx context.Context, user string) userReply {
	b := &l.batcher
	b.mu.Lock()
	if b.inflight < maxInflight {
		b.inflight++
		b.mu.Unlock()
		// Deferred: a panic (say, in an Observer) must not keep the
		// flight's place forever and wedge every later caller.
		defer l.handOff()
		var rep [1]userReply
		l.decideRedis(ctx, []string{user}, rep[:])
		return rep[0]
	}
	q := &queuedCall{user: user, done: make(chan struct{}, 1)}
	b.queue = append(b.queue, q)
	b.mu.Unlock()
	select {
	case <-q.done:
	case <-ctx.Done():
		// Still queued: leave, uncounted. Already in a batch: that batch
		// will answer (bounded by RedisTimeout), and its leader may be us.
		if l.unqueue(q) {
			return userReply{err: fmt.Errorf("limiter: waiting to ask Redis: %w", ctx.Err())}
		}
		<-q.done
	}
	if q.batch != nil {
		l.lead(ctx, q.batch)
	}
	return q.reply
}

// unqueue removes q from the queue if no batch has taken it yet.
func (l *Limiter) unqueue(q *queuedCall) bool {
	b := &l.batcher
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, other := range b.queue {
		if other == q {
			// A fresh array: batches handed out share the old one.
			b.queue = append(b.queue[:i:i], b.queue[i+1:]...)
			return true
		}
	}
	return false
}

// handOff ends a flight: the queue (up to maxBatch calls) becomes the next
// flight, led by its first caller. Taking the batch under the lock gives
// every queued call to exactly one flight.
func (l *Limiter) handOff() {
	b := &l.batcher
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.inflight--
		b.mu.Unlock()
		return
	}
	n := min(len(b.queue), maxBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil // let the handed-out calls be collected
	}
	b.mu.Unlock()
	batch[0].batch = batch
	batch[0].done <- struct{}{}
}

// lead sends batch (the leader first) as one round trip and wakes every
// caller in it. The batch outlives the leader's cancelled context: the
// others are still waiting for their answers, and RedisTimeout still
// bounds it. Even if deciding panics, every caller is woken (with an
// error) and the flight is handed on.
func (l *Limiter) lead(ctx context.Context, batch []*queuedCall) {
	done := false
	defer func() {
		if !done {
			for _, q := range batch {
				q.reply = userReply{err: errors.New("limiter: a batched decision panicked")}
			}
		}
		for _, q := range batch[1:] {
			q.done <- struct{}{}
		}
		l.handOff()
	}()
	users := make([]string, len(batch))
	for i, q := range batch {
		users[i] = q.user
	}
	replies := make([]userReply, len(batch))
	l.decideRedis(context.WithoutCancel(ctx), users, replies)
	for i, q := range batch {
		q.reply = replies[i]
	}
	done = true
}

// userResult turns one user_allow reply (or error) into a Decision,
// updating the deny cache and falling back while Redis is unreachable.
func (l *Limiter) userResult(ctx context.Context, user string, sent time.Time, res []int64, err error) (Decision, error) {
	if err != nil {
		return l.userFallback(ctx, user, err)
	}
	d, err := userDecision(res)
	if err != nil {
		return Decision{}, fmt.Errorf("%w (user %q)", err, user)
	}
	if l.cache != nil {
		l.cache.put(user, sent, d)
	}
	return l.observe(PolicyUser, d), nil
}

// userFallback applies Config.OnRedisError when err means Redis is out of
// reach; any other error (or the caller's own cancelled context) is
// returned as is.
func (l *Limiter) userFallback(ctx context.Context, user string, err error) (Decision, error) {
	if ctx.Err() != nil {
		return Decision{}, fmt.Errorf("limiter: allow %s: %w", strconv.Quote(user), ctx.Err())
	}
	if !IsUnavailable(err) {
		return Decision{}, err
	}
	var d Decision
	switch l.cfg.OnRedisError {
	case FailOpen:
		d = Decision{Allowed: true, Remaining: Unlimited}
	case FailClosed:
		d = Decision{Reason: ReasonRedisDown, Remaining: 0, RetryAfter: redisRetryInterval, ResetAfter: redisRetryInterval}
	default:
		d = l.local.allow(user, time.Now())
	}
	d.Degraded = true
	return l.observe(PolicyUser, d), nil
}
