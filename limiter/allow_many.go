package limiter

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// AllowMany decides the requests of users (one request each, in order) in
// one pipelined round trip: on a Cluster, one per node. Each user's
// decision is atomic on its own, exactly as Allow's; a user listed twice
// makes two requests. Repeat denials come from the local cache as in
// Allow.
//
// Every id is validated first: one bad id fails the whole call with
// ErrInvalidUser, naming its index, and nil decisions, before anything
// reaches Redis. When Redis answers with an error for some users, their
// decisions are zero (not allowed), the error (one line) names each of
// them, and the other decisions stand: they were counted. Outages follow
// Config.OnRedisError per user, with a nil error.
func (l *Limiter) AllowMany(ctx context.Context, users []string) ([]Decision, error) {
	if err := l.usable(); err != nil {
		return nil, err
	}
	for i, u := range users {
		if err := validUser(u); err != nil {
			return nil, &UserError{Index: i, Err: err}
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
		if d, ok := l.answerHere(ctx, u, sent); ok {
			out[i] = l.observe(PolicyUser, d)
			continue
		}
		ask = append(ask, u)
		index = append(index, i)
	}
	replies := make([]userReply, len(ask))
	l.decideRedis(ctx, ask, replies)
	var errs []error
	for j, rep := range replies {
		i := index[j]
		d, err := l.userResult(ctx, users[i], sent, rep.r[:], rep.err)
		if err != nil {
			errs = append(errs, &UserError{Index: i, Err: err})
		}
		out[i] = d
	}
	if len(errs) == 0 {
		return out, nil
	}
	return out, userErrors(errs)
}

// UserError is AllowMany's error for one entry of its users: Index is the
// entry's position, Err what went wrong (it wraps the sentinels, so
// errors.Is(err, ErrForeignKey) works through it). Its text ends with
// "(users[Index])". When several users fail, AllowMany's error unwraps to
// one *UserError each (errors.As finds the first; Unwrap() []error lists
// all).
type UserError struct {
	Index int
	Err   error
}

func (e *UserError) Error() string { return fmt.Sprintf("%v (users[%d])", e.Err, e.Index) }

// Unwrap returns Err.
func (e *UserError) Unwrap() error { return e.Err }

// userErrors joins AllowMany's per-user errors on one line ("; "), unlike
// errors.Join's newlines: a log line stays one line. errors.Is and
// errors.As see each of them.
type userErrors []error

func (e userErrors) Error() string {
	var b strings.Builder
	for i, err := range e {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e userErrors) Unwrap() []error { return e }
