package limiter

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// The per-user policy: a cooldown between a user's accepted requests and a
// sliding-window log of them (seed: user_cooldown and
// max_requests_per_user_hour). Both are decided by user_allow.lua in one
// round trip; a denied request writes nothing.
//
// Keys, all tagged {u:<user>} so they share one Cluster slot:
//
//	<prefix>{u:<user>}:w   sorted set: the window, whose newest entry is
//	                       also the cooldown clock (window on)
//	<prefix>{u:<user>}:cd  string with a TTL: the cooldown alone (window off)
//
// Keeping the cooldown in the window's newest entry saves the ~117 bytes a
// second key would cost per user.

var (
	userAllow  = newScript("user_allow.lua")
	userImport = newScript("user_import.lua")
)

func (l *Limiter) initUser() {}

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
// login, a numeric id); anything else is ErrInvalidUser. Errors from Redis
// are returned wrapped; see Config.OnRedisError for what happens while Redis
// cannot be reached.
func (l *Limiter) Allow(ctx context.Context, user string) (Decision, error) {
	if err := validUser(user); err != nil {
		return Decision{}, err
	}
	if l.cfg.UserCooldown == 0 && l.cfg.MaxRequestsPerUserHour == 0 {
		return l.observe(PolicyUser, Decision{Allowed: true, Remaining: Unlimited}), nil
	}
	r, err := l.run(ctx, userAllow, []string{l.userKey(user)},
		l.cfg.MaxRequestsPerUserHour, ms(l.cfg.UserWindow), ms(l.cfg.UserCooldown))
	if err != nil {
		return Decision{}, err
	}
	d, err := userDecision(r)
	if err != nil {
		return Decision{}, err
	}
	return l.observe(PolicyUser, d), nil
}

// userDecision reads user_allow.lua's reply.
func userDecision(r []int64) (Decision, error) {
	if len(r) != 5 {
		return Decision{}, fmt.Errorf("limiter: user_allow replied %d values, want 5", len(r))
	}
	return Decision{
		Allowed:    r[0] == 1,
		Reason:     Reason(r[1]),
		Remaining:  int(r[2]),
		RetryAfter: fromMs(r[3]),
		ResetAfter: fromMs(r[4]),
	}, nil
}

// Reset forgets everything about user on every replica: their cooldown and
// window start afresh.
func (l *Limiter) Reset(ctx context.Context, user string) error {
	if err := validUser(user); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RedisTimeout)
	defer cancel()
	// Both layouts, in case the window was switched on or off recently;
	// they share a slot, so one DEL suffices on a Cluster too.
	if err := l.rdb.Del(ctx, l.key("u", user, ":w"), l.key("u", user, ":cd")).Err(); err != nil {
		return fmt.Errorf("limiter: reset user: %w", err)
	}
	return nil
}

// Import replaces what Floodgate holds for user with the given times of
// past accepted requests, laid out exactly as Allow would have left them:
// the newest MaxRequestsPerUserHour times still inside the window, and the
// cooldown running from the newest one. Times in the future (clock skew)
// count as now. It is meant for migrating from an in-process limiter and
// for benchmarks that need an hour of history at once; a bot never needs it.
func (l *Limiter) Import(ctx context.Context, user string, accepted []time.Time) error {
	if err := validUser(user); err != nil {
		return err
	}
	if l.cfg.UserCooldown == 0 && l.cfg.MaxRequestsPerUserHour == 0 {
		return nil
	}
	keep := max(l.cfg.MaxRequestsPerUserHour, 1)
	msTimes := make([]int64, len(accepted))
	for i, t := range accepted {
		msTimes[i] = t.UnixMilli()
	}
	slices.Sort(msTimes)
	if len(msTimes) > keep {
		msTimes = msTimes[len(msTimes)-keep:]
	}
	args := make([]any, 0, 3+len(msTimes))
	args = append(args, l.cfg.MaxRequestsPerUserHour, ms(l.cfg.UserWindow), ms(l.cfg.UserCooldown))
	for _, m := range msTimes {
		args = append(args, m)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RedisTimeout)
	defer cancel()
	if err := userImport.Run(ctx, l.rdb, []string{l.userKey(user)}, args...).Err(); err != nil {
		return fmt.Errorf("limiter: user_import: %w", err)
	}
	return nil
}
