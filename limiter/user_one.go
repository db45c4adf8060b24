package limiter

import (
	"context"
	"fmt"
	"strconv"
)

// The lone decision: Allow with no other call in flight, as a chat bot
// makes nearly all of its own (one message at a time, between other work).
// It runs user_allow_one.lua, which decides one key with no loop, and goes
// to Redis as a command line built once per Limiter, so that a decision
// touches as little code and data as it can on both sides of the socket:
// a bot's decisions rarely find a warm cache.

var userAllowOne = newScript("user_allow_one.lua", 5)

// oneArgs is user_allow_one's EVALSHA command line, every argument but
// the key formatted once (see initUserOne).
type oneArgs [8]any

// oneCall is one decision's command line and key in a single allocation:
// go-redis writes a *string argument as the string, so the key needs no
// interface box of its own.
type oneCall struct {
	args oneArgs
	key  string
}

// initUserOne formats user_allow_one's arguments, once.
func (l *Limiter) initUserOne() {
	limit := l.cfg.MaxRequestsPerUserHour
	l.oneArgs = oneArgs{
		"evalsha", userAllowOne.Hash(), "1", nil,
		strconv.Itoa(limit),
		strconv.FormatInt(ms(l.cfg.UserWindow), 10),
		strconv.FormatInt(ms(l.cfg.UserCooldown), 10),
		strconv.Itoa(-limit - 1),
	}
}

// decideOne asks Redis for user's decision in one user_allow_one call, on
// the call path (the op is named user_allow, as the batched calls are:
// the same decision).
func (l *Limiter) decideOne(ctx context.Context, user string) (r [5]int64, err error) {
	c := &oneCall{args: l.oneArgs, key: l.userKey(user)}
	c.args[3] = &c.key
	err = l.call(ctx, userAllow.name, c.key, func(ctx context.Context) error {
		cmd := l.rdb.Do(ctx, c.args[:]...)
		if isNoScript(cmd.Err()) {
			// A restart or SCRIPT FLUSH: EVAL loads it again.
			c.args[0], c.args[1] = "eval", userAllowOne.src
			cmd = l.rdb.Do(ctx, c.args[:]...)
		}
		res, err := cmd.Slice()
		if err != nil {
			return err
		}
		return oneReply(res, &r)
	})
	return r, err
}

// oneReply reads user_allow_one's five integers into r, without the slice
// a conversion would allocate.
func oneReply(res []any, r *[5]int64) error {
	if len(res) != len(r) {
		return fmt.Errorf("limiter: %s replied %d values, want %d", userAllow.name, len(res), len(r))
	}
	for i, v := range res {
		n, ok := v.(int64)
		if !ok {
			return fmt.Errorf("limiter: %s reply[%d] is %T, want an integer", userAllow.name, i, v)
		}
		r[i] = n
	}
	return nil
}
