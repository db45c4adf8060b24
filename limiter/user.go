package limiter

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// The per-user policy: a cooldown between a user's accepted requests and a
// sliding-window log of them (Config.UserCooldown and
// MaxRequestsPerUserHour). Both are decided by user_allow.lua in one round
// trip; a denied request writes nothing.
//
// Keys, all tagged {u:<user>} so they share one Cluster slot (an id
// holding '{' or '}' is tagged by its hash instead: see key in keys.go;
// UserKeys lists them):
//
//	<prefix>{u:<user>}:w   sorted set: the window, whose newest entry is
//	                       also the cooldown clock (window on)
//	<prefix>{u:<user>}:cd  string with a TTL: the cooldown alone (window off)
//
// Keeping the cooldown in the window's newest entry saves the ~117 bytes a
// second key would cost per user.

var (
	userAllow  = newScript("user_allow.lua", 0)
	userImport = newScript("user_import.lua", 0)
)

// initUser prepares the arguments every decision sends, once, so the hot
// path formats nothing.
func (l *Limiter) initUser() {
	l.userArgs = []any{l.cfg.MaxRequestsPerUserHour, ms(l.cfg.UserWindow), ms(l.cfg.UserCooldown)}
	// Many users' keys in one script only on one node (a plain or Sentinel
	// client): a Cluster or a Ring would put them on other shards.
	_, l.multiKey = l.rdb.(*redis.Client)
	l.cache = newDenyCache(l.cfg.LocalCacheSize)
	l.local = newLocalUsers(l.cfg)
	l.initUserOne()
}

// userPolicyOff checks a per-user call: the Limiter usable and user a
// valid id (else the error). off reports that the policy has neither a
// cooldown nor a window: every request passes and Redis holds nothing.
func (l *Limiter) userPolicyOff(user string) (off bool, err error) {
	if err := l.usable(); err != nil {
		return false, err
	}
	if err := validUser(user); err != nil {
		return false, err
	}
	return l.cfg.UserCooldown == 0 && l.cfg.MaxRequestsPerUserHour == 0, nil
}

// userKey is the one key a decision touches.
func (l *Limiter) userKey(user string) string {
	if l.cfg.MaxRequestsPerUserHour > 0 {
		return l.key("u", user, ":w")
	}
	return l.key("u", user, ":cd")
}

// Allow decides one request of user under the cooldown and the sliding
// window, counts it when allowed, and says when to come back when not.
//
// user is any non-empty byte string of at most MaxUserLen bytes (a Twitch
// login, a numeric id); anything else is ErrInvalidUser. A repeat request
// of a user this process saw denied is answered from the local deny cache
// (Decision.Cached) until the RetryAfter Redis gave; see
// Config.LocalCacheSize. Concurrent calls are coalesced into pipelines.
// While Redis cannot be reached the decision follows Config.OnRedisError
// and is marked Degraded, with a nil error; other Redis errors are
// returned wrapped.
//
// Allow returns by ctx's deadline. When ctx ends first, the error wraps
// ctx.Err() and names the user; if the call had already gone to Redis
// (alone or in a coalesced pipeline, which goes on without it), the
// request may still have been counted, as with any write that timed out.
// The Observer then still sees the decision Redis made.
func (l *Limiter) Allow(ctx context.Context, user string) (Decision, error) {
	off, err := l.userPolicyOff(user)
	if err != nil {
		return Decision{}, err
	}
	if off {
		return l.observe(PolicyUser, Decision{Allowed: true, Remaining: Unlimited}), nil
	}
	sent := time.Now()
	if d, ok := l.answerHere(ctx, user, sent); ok {
		return l.observe(PolicyUser, d), nil
	}
	rep := l.allowRedis(ctx, user, sent)
	return l.userResult(ctx, user, sent, rep.r[:], rep.err)
}

// Wait blocks until user's request is allowed (and counts it), sleeping
// each RetryAfter Redis gives, or until ctx ends. Like x/time/rate's Wait
// it fails at once, wrapping context.DeadlineExceeded, when the wait would
// pass ctx's deadline. Bots mostly reply "slow down" instead; Wait suits
// queued work such as scheduled messages.
func (l *Limiter) Wait(ctx context.Context, user string) (Decision, error) {
	return waitFor(ctx, fmt.Sprintf("user %q", user), func() (Decision, error) { return l.Allow(ctx, user) })
}

// answerHere answers a request of user sent at now without Redis when
// this process can (for Allow and AllowMany alike): a denial from the
// deny cache, or one localUsers.precheck gives, the latter marked
// Degraded (not Cached) while the user's Redis node is failing (its last
// call did not answer): it is then the fallback's own answer.
func (l *Limiter) answerHere(ctx context.Context, user string, now time.Time) (Decision, bool) {
	if l.cache != nil {
		if d, ok := l.cache.get(user, now); ok {
			return d, true
		}
	}
	d, ok := l.local.precheck(user, now)
	if ok && l.healthOf(ctx, l.userKey(user)).failing() {
		d.Cached, d.Degraded = false, true
	}
	return d, ok
}

// userDecision reads user_allow.lua's reply.
func userDecision(r []int64) (Decision, error) {
	if len(r) != 5 {
		return Decision{}, fmt.Errorf("limiter: user_allow replied %d values, want 5", len(r))
	}
	if r[0] < 0 {
		return Decision{}, ErrForeignKey
	}
	d := replyDecision(r)
	if !d.Allowed {
		atLeastMinWait(&d)
	}
	return d, nil
}

// atLeastMinWait gives a denial a wait of at least minRetryAfter: a
// RetryAfter of 0 would tell the caller to retry at once.
func atLeastMinWait(d *Decision) {
	d.RetryAfter = max(d.RetryAfter, minRetryAfter)
	d.ResetAfter = max(d.ResetAfter, d.RetryAfter)
}

// Reset forgets everything Redis holds about user: their cooldown and
// window start afresh on every replica. This replica's deny cache forgets
// them too; another replica that denied the user a moment ago may keep
// answering from its own cache until the RetryAfter it was given.
func (l *Limiter) Reset(ctx context.Context, user string) error {
	if _, err := l.userPolicyOff(user); err != nil {
		return err
	}
	// Both layouts, in case the window was switched on or off recently;
	// they share a slot, so one DEL suffices on a Cluster too.
	l.local.reset(user)
	w, cd := l.key("u", user, ":w"), l.key("u", user, ":cd")
	err := l.call(ctx, "user_reset", w, func(ctx context.Context) error {
		return l.rdb.Del(ctx, w, cd).Err()
	})
	if l.cache != nil {
		// After the DEL, and fencing off denials still in flight, so none
		// can put the user back.
		l.cache.reset(user, time.Now())
	}
	return err
}

// Import replaces what Floodgate holds for user with the given times of
// past accepted requests, laid out exactly as Allow would have left them:
// the newest MaxRequestsPerUserHour times still inside the window, and the
// cooldown running from the newest one. Times in the future (clock skew)
// count as now. It is meant for migrating from an in-process limiter and
// for benchmarks that need an hour of history at once; a bot never needs it.
func (l *Limiter) Import(ctx context.Context, user string, accepted []time.Time) error {
	if off, err := l.userPolicyOff(user); off || err != nil {
		return err
	}
	keep := max(l.cfg.MaxRequestsPerUserHour, 1)
	msTimes := make([]int64, len(accepted))
	for i, t := range accepted {
		// Rounded up, as user_allow.lua records a request: an imported
		// time then ages out late, never early.
		msTimes[i] = t.UnixMilli()
		if t.Nanosecond()%int(time.Millisecond) != 0 {
			msTimes[i]++
		}
	}
	slices.Sort(msTimes)
	if len(msTimes) > keep {
		msTimes = msTimes[len(msTimes)-keep:]
	}
	args := append(make([]any, 0, len(l.userArgs)+len(msTimes)), l.userArgs...)
	for _, m := range msTimes {
		args = append(args, m)
	}
	key := l.userKey(user)
	err := l.call(ctx, userImport.name, key, func(ctx context.Context) error {
		return userImport.Run(ctx, l.rdb, []string{key}, args...).Err()
	})
	l.local.reset(user)
	if l.cache != nil {
		// As Reset: a denial sent before the import must not outlive it.
		l.cache.reset(user, time.Now())
	}
	return err
}

// userReply is user_allow's five integers for one request, or its error.
type userReply struct {
	r   [5]int64
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
	if l.cfg.WaitReplicas > 0 {
		l.evalAcked(ctx, userAllow, calls) // replica_ack.go
	} else if len(calls) == 1 {
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
				out[i] = userReply{r: [5]int64(c.res[5*k : 5*k+5])}
			}
			i++
		}
	}
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
	l.local.redisSaid(user, d)
	return l.observe(PolicyUser, d), nil
}
