package limiter

import (
	"context"
	"fmt"
	"time"
)

var userPeek = newScript("user_peek.lua", 7)

// UserStatus is what the per-user policy holds for one user, as Peek reads
// it. With the defaults (10 s cooldown, 20 per hour), a user whose only
// accepted message was 4 s ago peeks as {Reason: ReasonCooldown,
// Remaining: 19, RetryAfter: 6s, CooldownLeft: 6s, Entries: 1,
// ResetAfter: 59m56s}; a user never seen as {Remaining: 20}.
type UserStatus struct {
	// Remaining is how many requests the window would still admit: the
	// limit minus Entries (never below 0). Unlimited (-1) without a window.
	Remaining int
	// RetryAfter is 0 when a request now would be allowed; otherwise the
	// wait after which it would be, as Allow would answer.
	RetryAfter time.Duration
	// Reason is what would deny a request now (ReasonCooldown or
	// ReasonWindow; the one with the longer wait when both would), or
	// ReasonNone.
	Reason Reason
	// CooldownLeft is how long the cooldown still runs, 0 when over.
	CooldownLeft time.Duration
	// Entries is how many accepted requests the window holds now (0
	// without a window).
	Entries int
	// ResetAfter is how long until Redis holds nothing for the user; 0
	// when it holds nothing now.
	ResetAfter time.Duration
}

// Peek reads user's state under the per-user policy without counting a
// request or changing anything (one read-only script, user_peek.lua): the
// operator's view of "why was I denied?". It bypasses the local deny cache
// and has no FailureMode: while Redis cannot be reached it returns an error
// wrapping the Redis error (IsUnavailable reports true for it). user is
// checked as in Allow (ErrInvalidUser); a key under the prefix that
// Floodgate did not write is ErrForeignKey.
func (l *Limiter) Peek(ctx context.Context, user string) (UserStatus, error) {
	off, err := l.userPolicyOff(user)
	if err != nil {
		return UserStatus{}, err
	}
	if off {
		return UserStatus{Remaining: Unlimited}, nil
	}
	r, err := l.run(ctx, userPeek, []string{l.userKey(user)}, l.userArgs...)
	if err != nil {
		return UserStatus{}, err
	}
	if r[0] < 0 {
		return UserStatus{}, fmt.Errorf("%w (user %q)", ErrForeignKey, user)
	}
	return UserStatus{
		Reason:       Reason(r[1]),
		Remaining:    int(r[2]),
		RetryAfter:   fromMs(r[3]),
		ResetAfter:   fromMs(r[4]),
		CooldownLeft: fromMs(r[5]),
		Entries:      int(r[6]),
	}, nil
}
