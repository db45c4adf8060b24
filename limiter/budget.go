package limiter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Per-user budgets of units (LLM tokens) in a sliding window: a weighted
// window log, one sorted set per user and budget, tagged like the user's
// other keys so it shares their Cluster slot:
//
//	<prefix>{u:<user>}:b:<budget>   sorted set (budget_reserve.lua)
//
// Each entry is a spend or a reservation, scored by its time relative to a
// base entry; a reservation counts as its estimate from the moment it is
// made until it is settled (then as the actual), cancelled, or for the
// whole window if never settled. Every key's TTL is the window after its
// newest entry.

var (
	budgetReserve = newScript("budget_reserve.lua", 5)
	budgetSettle  = newScript("budget_settle.lua", 1)
	budgetPeek    = newScript("budget_peek.lua", 6)
)

// PolicyBudget is the Observer's policy name for Budget decisions.
const PolicyBudget = "budget"

// MaxBudgetUnits bounds a Budget's Limit and any one estimate, charge or
// actual cost. The scripts keep a spend as one integer, units*128+slot,
// and sums of up to 127 of them must stay exact in Lua's doubles; 2^31-1
// tokens per window is far beyond any LLM bill a chat user runs up.
const MaxBudgetUnits = 1<<31 - 1

// maxBudgetEntries is how many spends and reservations one user's window
// holds before the oldest two merge: a sorted set stays a compact listpack
// up to 128 entries, one of which is the base.
const maxBudgetEntries = 127

// ErrStaleReservation: Settle or Cancel was given a reservation token that
// names no live reservation of this user in this budget: it was settled or
// cancelled already, its lease ended (it then counts as its estimate), or
// it belongs to another user or budget. Nothing was changed. The message
// names the token and says which.
var ErrStaleReservation = errors.New("limiter: reservation not held")

// A Budget limits how many units (LLM tokens) each user may spend in any
// sliding Window, exactly across every replica. The cost of an LLM call is
// only known after it, so a call is Reserved first with an estimate
// (prompt tokens + max_tokens) and Settled after with the actual usage;
// Charge records a cost known up front.
//
// A reservation counts as its estimate from the moment it is made: it is
// admitted only if the user's spends in the window plus their reservations
// plus this estimate fit in Limit, and a denial writes nothing. Settle then
// replaces the estimate by the actual cost, lower or higher; a higher one
// may take the user past Limit (never an error) and so delays their next
// reservation. A reservation neither settled nor cancelled within Lease
// (a replica crashed mid-call) stays counted as its estimate. Each spend
// ages out one Window after its reservation was made (or its Charge).
//
// With Limit 20,000 per hour, a viewer's first question at 12:00 reserves
// 1,500 (Remaining 18,500) and settles at 900 (the window holds 900); at
// 12:40, having spent 19,000, a reservation of 1,500 is denied with
// RetryAfter 20m: at 13:00 the 900 of 12:00 ages out and 1,500 fits.
//
// Calls of one user that overlap may each overshoot: the window then holds
// at most Limit plus the overshoots of the calls still unsettled when the
// newest reservation was admitted (just the last call's when they do not
// overlap), and never more than Limit when every call settles at or below
// its estimate.
//
// Build a Budget with Limiter.Budget; the zero value is not usable. A
// Budget is immutable and safe for concurrent use; Budgets of one name on
// one Limiter share the users' state in Redis and, under FailLocal, one
// in-process fallback.
type Budget struct {
	l      *Limiter
	name   string
	limit  int
	window time.Duration
	lease  time.Duration
	local  *localBudget
	suffix string // ":b:" + name, the end of every user's key
	// nonce draws a reservation's nonce; tests pin it.
	nonce func() string
}

// BudgetSettings configure a Budget. A zero field takes the Config's value.
type BudgetSettings struct {
	// Limit is how many units one user may spend in any Window, 1 to
	// MaxBudgetUnits: Config.UserTokenBudget (FLOODGATE_USER_TOKEN_BUDGET)
	// when 0, which must then be set.
	Limit int
	// Window is the sliding window, 1ms to 30 days and at most
	// Config.MaxIdleTime: Config.UserTokenWindow, 1h by default.
	Window time.Duration
	// Lease is how long a reservation may be settled or cancelled, 1ms to
	// Window: Config.LLMProbeLease (30s by default), or Window if shorter.
	// After it the reservation counts as its estimate for good.
	Lease time.Duration
}

// Budget returns the budget called name (non-empty UTF-8 of at most
// MaxNameLen bytes; it is part of every user's key, so keep it short:
// "llm"). Invalid settings are an error wrapping ErrInvalidArgument naming
// the field. Budget does not contact Redis.
func (l *Limiter) Budget(name string, s BudgetSettings) (*Budget, error) {
	if err := l.validPolicy("Budget", "budget", name); err != nil {
		return nil, err
	}
	if s.Limit == 0 {
		s.Limit = l.cfg.UserTokenBudget
		if s.Limit == 0 {
			return nil, fmt.Errorf("%w: budget %q: BudgetSettings.Limit is 0 and so is Config.UserTokenBudget (%s)", ErrInvalidArgument, name, envName("UserTokenBudget"))
		}
	}
	s.Window = cmp.Or(s.Window, l.cfg.UserTokenWindow)
	s.Lease = cmp.Or(s.Lease, min(l.cfg.LLMProbeLease, s.Window))
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: budget %q: BudgetSettings.%s "+format, append([]any{ErrInvalidArgument, name, field}, args...)...))
	}
	if s.Limit < 1 || s.Limit > MaxBudgetUnits {
		bad("Limit", "must be between 1 and %d (what the window's encoding keeps exact), got %d", MaxBudgetUnits, s.Limit)
	}
	if s.Window < time.Millisecond || s.Window > maxPolicyDuration {
		bad("Window", "must be between 1ms and %v, got %v", maxPolicyDuration, s.Window)
	} else if s.Window > l.cfg.MaxIdleTime {
		bad("Window", "(%v) is longer than Config.MaxIdleTime (%v): a user's key lives one window after their last spend", s.Window, l.cfg.MaxIdleTime)
	}
	if s.Lease < time.Millisecond || s.Lease > s.Window {
		bad("Lease", "must be between 1ms and the Window (%v), got %v", s.Window, s.Lease)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Budget{
		l:      l,
		name:   name,
		limit:  s.Limit,
		window: s.Window,
		lease:  s.Lease,
		local:  l.fallback.budget(name),
		suffix: ":b:" + name,
		nonce:  newToken,
	}, nil
}

// checkBudgetConfig adds Config.Validate's errors for the default budget.
func checkBudgetConfig(errs *[]error, c Config) {
	checkInt(errs, "UserTokenBudget", c.UserTokenBudget, 0, MaxBudgetUnits)
	if c.UserTokenBudget > 0 {
		checkDuration(errs, "UserTokenWindow", c.UserTokenWindow, time.Millisecond, maxPolicyDuration)
		if c.MaxIdleTime > 0 && c.UserTokenWindow > c.MaxIdleTime {
			*errs = append(*errs, fieldError("UserTokenWindow", "(%v) is longer than MaxIdleTime (%v): a user's budget key lives one window after their last spend", c.UserTokenWindow, c.MaxIdleTime))
		}
	}
}

// Name returns the budget's name.
func (b *Budget) Name() string { return b.name }

// Limit returns the units one user may spend per window, and the window.
func (b *Budget) Limit() (units int, window time.Duration) { return b.limit, b.window }

// Lease returns how long a reservation may be settled or cancelled.
func (b *Budget) Lease() time.Duration { return b.lease }

// UserKey returns the Redis key holding user's state in this budget, for
// operators' tools. It sends nothing to Redis; a bad id is ErrInvalidUser.
func (b *Budget) UserKey(user string) (string, error) {
	if err := b.check(user); err != nil {
		return "", err
	}
	return b.key(user), nil
}

func (b *Budget) key(user string) string { return b.l.key("u", user, b.suffix) }

func (b *Budget) check(user string) error {
	if b == nil || b.l == nil || b.local == nil {
		return fmt.Errorf("%w: nil or zero Budget; use Limiter.Budget", ErrInvalidArgument)
	}
	if err := validUser(user); err != nil {
		return fmt.Errorf("%w (budget %q)", err, b.name)
	}
	return nil
}

// checkUnits rejects what could never pass: n must be 1..Limit.
func (b *Budget) checkUnits(what string, n int) error {
	if n < 1 || n > b.limit {
		return fmt.Errorf("%w: budget %q: %s must be between 1 and the limit %d, got %d", ErrInvalidArgument, b.name, what, b.limit, n)
	}
	return nil
}

// Reserve admits a call that may cost up to estimate units (prompt tokens
// + max_tokens) if the user's spends and reservations in the window plus
// estimate fit in the Limit, and then holds estimate for them. Allowed
// decisions carry the reservation in Decision.Token (opaque, URL-safe),
// to pass to Settle once the call's cost is known or to Cancel if it did
// not happen; Remaining is the units left after it. A denial (ReasonBudget)
// writes nothing; its RetryAfter is when enough of the window will have
// aged out for estimate, if nothing else happens (a Settle below the
// estimate or a Cancel may make room sooner).
//
// estimate must be 1..Limit (more could never pass): else ErrInvalidArgument.
// While Redis cannot be reached the decision follows
// Config.BudgetOnRedisError, marked Degraded, with a nil error: FailLocal
// runs the same budget in this process (its token settles there),
// FailOpen allows (Remaining Unlimited; settling its token does nothing),
// FailClosed denies with ReasonRedisDown. A key under the prefix that
// Floodgate did not write is ErrForeignKey; other Redis errors are
// returned.
func (b *Budget) Reserve(ctx context.Context, user string, estimate int) (Decision, error) {
	return b.admit(ctx, user, estimate, true)
}

// Charge records a cost of n units known before the call, if it fits:
// Reserve and Settle at n in one round trip. Its Decision is as Reserve's,
// without a Token. n must be 1..Limit.
func (b *Budget) Charge(ctx context.Context, user string, n int) (Decision, error) {
	return b.admit(ctx, user, n, false)
}

// openToken is the Token of a reservation FailOpen allowed: it holds
// nothing, and settling it does nothing.
const openToken = "open"

func (b *Budget) admit(ctx context.Context, user string, n int, reserve bool) (Decision, error) {
	if err := b.check(user); err != nil {
		return Decision{}, err
	}
	what := "charge"
	if reserve {
		what = "estimate"
	}
	if err := b.checkUnits(what, n); err != nil {
		return Decision{}, err
	}
	nonce := ""
	if reserve {
		nonce = b.nonce()
	}
	key := b.key(user)
	r, err := b.l.run(ctx, budgetReserve, []string{key}, b.limit, ms(b.window), ms(b.lease), n, nonce)
	if err != nil {
		d, err := b.l.degrade(ctx, PolicyBudget, b.l.cfg.BudgetOnRedisError, err, func() Decision {
			return b.local.admit(time.Now(), user, n, nonce, b.limit, b.window, b.lease)
		})
		if err == nil && reserve && d.Allowed && d.Token == "" {
			d.Token = openToken
		}
		if err == nil {
			b.observeUnits(d, n, reserve)
		}
		return d, err
	}
	if r[0] < 0 {
		return Decision{}, fmt.Errorf("limiter: budget_reserve on %q (budget %q): %w", key, b.name, ErrForeignKey)
	}
	d := Decision{
		Allowed:    r[0] == 1,
		Remaining:  int(r[1]),
		RetryAfter: fromMs(r[2]),
		ResetAfter: fromMs(r[3]),
	}
	if d.Allowed {
		if reserve {
			d.Token = strconv.FormatInt(r[4], 10) + "." + strconv.Itoa(n) + "." + nonce
		}
	} else {
		d.Reason = ReasonBudget
		atLeastMinWait(&d)
	}
	b.observeUnits(d, n, reserve)
	return b.l.observe(PolicyBudget, d), nil
}

// observeUnits reports an admission's units to a BudgetObserver: denied,
// or spent by a charge.
func (b *Budget) observeUnits(d Decision, n int, reserve bool) {
	if o, ok := b.l.obs.(BudgetObserver); ok && (!d.Allowed || !reserve) {
		o.ObserveUnits(b.name, d.Allowed, n)
	}
}

// Settle replaces a reservation's estimate with what the call cost,
// actual units (0..MaxBudgetUnits; 0 is Cancel). Above the estimate it is
// recorded in full, even past the Limit: that delays the user's next
// reservation, and is never an error. The spend keeps the reservation's
// time, so it ages out when the reservation would have.
//
// token is a Decision.Token from Reserve for this user on this budget. One
// that names no live reservation (settled or cancelled already, past its
// Lease, another user's or budget's) is an error wrapping
// ErrStaleReservation that names it; one not in Reserve's form is
// ErrInvalidArgument. Either way nothing changes. A token FailLocal issued
// settles in this process; a FailOpen one holds nothing, so settling it
// does nothing. While Redis cannot be reached the error wraps the Redis
// error (IsUnavailable reports true) and the reservation keeps counting as
// its estimate.
func (b *Budget) Settle(ctx context.Context, user, token string, actual int) error {
	if err := b.check(user); err != nil {
		return err
	}
	if actual < 0 || actual > MaxBudgetUnits {
		return fmt.Errorf("%w: budget %q: actual must be between 0 and %d, got %d", ErrInvalidArgument, b.name, MaxBudgetUnits, actual)
	}
	err := b.settle(ctx, "settle", user, token, actual)
	if o, ok := b.l.obs.(BudgetObserver); ok && err == nil && actual > 0 {
		o.ObserveUnits(b.name, true, actual)
	}
	return err
}

// Cancel frees a reservation whose call did not happen: nothing of it
// counts any more. token is as for Settle, with the same errors.
func (b *Budget) Cancel(ctx context.Context, user, token string) error {
	if err := b.check(user); err != nil {
		return err
	}
	return b.settle(ctx, "cancel", user, token, 0)
}

func (b *Budget) settle(ctx context.Context, op, user, token string, actual int) error {
	switch {
	case token == openToken:
		return nil
	case isLocalToken(token):
		return b.staleErr(op, user, token, b.local.settle(time.Now(), user, token[1:], actual, b.lease))
	case !validReservation(token):
		return fmt.Errorf("%w: budget %q: %q is not a reservation token (Decision.Token from Reserve)", ErrInvalidArgument, b.name, token)
	}
	key := b.key(user)
	r, err := b.l.run(ctx, budgetSettle, []string{key}, token, ms(b.lease), actual)
	if err != nil {
		return err
	}
	if r[0] == -1 {
		return fmt.Errorf("limiter: budget_settle on %q (budget %q): %w", key, b.name, ErrForeignKey)
	}
	return b.staleErr(op, user, token, r[0])
}

// staleErr turns a settle status (1 done, 0 unknown, -2 lease ended) into
// the error Settle and Cancel return.
func (b *Budget) staleErr(op, user, token string, status int64) error {
	switch status {
	case 1:
		return nil
	case -2:
		return fmt.Errorf("%w: %s of %q for user %q in budget %q: its lease (%v) has ended, so it counts as its estimate", ErrStaleReservation, op, token, user, b.name, b.lease)
	}
	return fmt.Errorf("%w: %s of %q for user %q in budget %q: settled or cancelled already, aged out, or another user's or budget's", ErrStaleReservation, op, token, user, b.name)
}

// validReservation reports whether t has the form Reserve gives:
// "<slot>.<units>.<16 hex digits>".
func validReservation(t string) bool {
	slot, rest, ok := strings.Cut(t, ".")
	if !ok {
		return false
	}
	units, nonce, ok := strings.Cut(rest, ".")
	if !ok || !isToken(nonce) {
		return false
	}
	s, err := strconv.Atoi(slot)
	if err != nil || s < 0 || s > maxBudgetEntries || strconv.Itoa(s) != slot {
		return false
	}
	u, err := strconv.Atoi(units)
	return err == nil && u >= 1 && u <= MaxBudgetUnits && strconv.Itoa(u) == units
}

// isLocalToken reports whether t was issued by the FailLocal fallback:
// "l" and 16 hex digits.
func isLocalToken(t string) bool { return len(t) == 17 && t[0] == 'l' && isToken(t[1:]) }

// BudgetStatus is what a Budget holds for one user, as Peek reads it.
// With Limit 20,000 per hour, a viewer who settled one call at 900 at
// 12:00 and holds a reservation of 1,500 made at 12:10 peeks at 12:10 as
// {Spent: 900, Reserved: 1500, Reservations: 1, Remaining: 17600,
// OldestAgesOut: 50m, ResetAfter: 1h}.
type BudgetStatus struct {
	// Spent is the units of settled spends (and charges) in the window,
	// including reservations whose lease ended unsettled, at their
	// estimate.
	Spent int
	// Reserved is the units held by live reservations (their estimates).
	Reserved int
	// Reservations is how many live reservations the user holds.
	Reservations int
	// Remaining is Limit - Spent - Reserved, never below 0: the largest
	// estimate a Reserve would admit now.
	Remaining int
	// OldestAgesOut is how long until the oldest entry leaves the window
	// and frees its units; 0 when nothing is held.
	OldestAgesOut time.Duration
	// ResetAfter is how long until the window holds nothing; 0 when
	// nothing is held.
	ResetAfter time.Duration
}

// Peek reads user's state in the budget without changing anything (one
// read-only script): for operators and for telling a user what is left.
// It has no FailureMode: while Redis cannot be reached it returns an
// error for which IsUnavailable reports true. A key under the prefix that
// Floodgate did not write is ErrForeignKey.
func (b *Budget) Peek(ctx context.Context, user string) (BudgetStatus, error) {
	if err := b.check(user); err != nil {
		return BudgetStatus{}, err
	}
	key := b.key(user)
	r, err := b.l.run(ctx, budgetPeek, []string{key}, ms(b.window), ms(b.lease))
	if err != nil {
		return BudgetStatus{}, err
	}
	if r[0] < 0 {
		return BudgetStatus{}, fmt.Errorf("limiter: budget_peek on %q (budget %q): %w", key, b.name, ErrForeignKey)
	}
	st := BudgetStatus{
		Spent:         int(r[1]),
		Reserved:      int(r[2]),
		Reservations:  int(r[3]),
		OldestAgesOut: fromMs(r[4]),
		ResetAfter:    fromMs(r[5]),
	}
	st.Remaining = max(b.limit-st.Spent-st.Reserved, 0)
	return st, nil
}
