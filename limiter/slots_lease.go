package limiter

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
)

// A Lease is one slot held by one holder, until Release or until it
// expires (the pool's lease after the grant or the last Refresh). Each
// grant is distinct, so Refresh and Release act on this grant only, even
// when the holder holds others. Token and Slots.Lease carry a Lease to
// another process. A Lease is safe for concurrent use.
type Lease struct {
	s      *Slots
	holder string
	member string
	local  bool // held in the in-process pool (FailLocal)
	open   bool // holds nothing (FailOpen)
}

// Holder returns the holder the lease was granted to.
func (l *Lease) Holder() string { return l.holder }

// Degraded reports whether the lease was granted without Redis, per
// Config.SlotsOnRedisError: from the in-process pool (FailLocal) or
// holding nothing (FailOpen). Such a lease is not counted on other
// replicas.
func (l *Lease) Degraded() bool { return l.local || l.open }

// Refresh extends the lease to a full lease from now. It returns
// ErrLeaseLost when the lease was released or expired (the slot may
// belong to another holder by now), and an error wrapping
// ErrRedisUnavailable when Redis cannot be reached (the lease then runs
// out unless a later Refresh gets through).
func (l *Lease) Refresh(ctx context.Context) error { return l.act(ctx, true) }

// Release gives the slot back. It returns ErrLeaseLost when the lease was
// already released or expired: releasing twice, or after the slot was
// granted again, frees nobody else's slot. When Redis cannot be reached
// it returns an error wrapping ErrRedisUnavailable; the slot then comes
// back when the lease expires.
func (l *Lease) Release(ctx context.Context) error { return l.act(ctx, false) }

// act is Refresh (refresh true) or Release: in the in-process pool for a
// FailLocal lease, in Redis (the script replies 1 while the lease is held)
// otherwise; a FailOpen lease holds nothing, so there is nothing to do.
func (l *Lease) act(ctx context.Context, refresh bool) error {
	if l == nil || l.s == nil {
		return fmt.Errorf("%w: nil or zero Lease", ErrInvalidArgument)
	}
	op, sc, args := "release", slotsRelease, []any{l.member}
	if refresh {
		op, sc, args = "refresh", slotsRefresh, append(args, ms(l.s.lease))
	}
	held := true
	switch {
	case l.open:
	case l.local && refresh:
		held = l.s.local.refresh(l.member, l.s.lease)
	case l.local:
		held = l.s.local.release(l.member)
	default:
		r, err := l.s.l.run(ctx, sc, []string{l.s.holders}, args...)
		if err != nil {
			return l.redisError(op, err)
		}
		held = r[0] == 1
	}
	if !held {
		return l.lost(op)
	}
	return nil
}

func (l *Lease) lost(op string) error {
	return fmt.Errorf("%w: %s of %q's lease in pool %q", ErrLeaseLost, op, l.holder, l.s.name)
}

func (l *Lease) redisError(op string, err error) error {
	if IsUnavailable(err) {
		return fmt.Errorf("limiter: %s of %q's lease in pool %q: %w: %w", op, l.holder, l.s.name, ErrRedisUnavailable, err)
	}
	return err
}

// Token returns the lease as an opaque, URL-safe string (letters, digits,
// '-', '_' and '.'), for a process that hands leases to others: Slots.Lease
// rebuilds a Lease from it that refreshes and releases the same grant. The
// token names the pool, the holder and the grant, and whether the lease is
// degraded; it holds no secret beyond the grant's random 128-bit id, so
// treat it like the lease itself. A degraded lease from the in-process pool
// (FailLocal) can only be refreshed or released in the process that
// granted it: elsewhere those return ErrLeaseLost.
func (l *Lease) Token() string {
	if l == nil || l.s == nil {
		return ""
	}
	mode := tokenRedis
	switch {
	case l.open:
		mode = tokenOpen
	case l.local:
		mode = tokenLocal
	}
	enc := base64.RawURLEncoding
	return mode + "." + enc.EncodeToString([]byte(l.s.name)) + "." + enc.EncodeToString([]byte(l.member))
}

// Token modes: where the lease is held.
const (
	tokenRedis = "r"
	tokenLocal = "l"
	tokenOpen  = "o"
)

// maxTokenLen bounds a token before it is decoded: a mode, two dots and
// the base64 of the longest pool name and member.
var maxTokenLen = 3 + base64.RawURLEncoding.EncodedLen(MaxNameLen) + base64.RawURLEncoding.EncodedLen(memberIDLen+1+MaxUserLen)

// Lease rebuilds the Lease that token (from Lease.Token) names, so that
// this process can Refresh or Release it; it does not contact Redis, so a
// lease that was released or expired meanwhile shows as ErrLeaseLost on
// first use. A malformed token is an error wrapping ErrInvalidArgument, as
// is a token of another pool (naming both) and one claiming a fail-open
// lease when Config.SlotsOnRedisError is not FailOpen.
func (s *Slots) Lease(token string) (*Lease, error) {
	if err := s.checkPool(); err != nil {
		return nil, err
	}
	bad := func(why string) error {
		return fmt.Errorf("%w: slot pool %q: malformed lease token (%s)", ErrInvalidArgument, s.name, why)
	}
	if len(token) > maxTokenLen {
		return nil, bad(fmt.Sprintf("%d bytes, at most %d", len(token), maxTokenLen))
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, bad("want 3 parts separated by '.'")
	}
	l := &Lease{s: s}
	switch parts[0] {
	case tokenRedis:
	case tokenLocal:
		l.local = true
	case tokenOpen:
		// A fail-open lease holds nothing, so Refresh and Release would
		// succeed without asking Redis: from a pool that does not fail
		// open, such a token was altered (or comes from a Limiter
		// configured otherwise), and the lease it hides stays held.
		if s.l.cfg.SlotsOnRedisError != FailOpen {
			return nil, bad("a fail-open lease, but this pool's SlotsOnRedisError is not FailOpen: altered, or from a Limiter configured otherwise")
		}
		l.open = true
	default:
		return nil, bad("unknown mode")
	}
	enc := base64.RawURLEncoding.Strict()
	pool, err := enc.DecodeString(parts[1])
	if err != nil {
		return nil, bad("pool is not base64url")
	}
	if string(pool) != s.name {
		return nil, fmt.Errorf("%w: lease token of slot pool %q given to pool %q", ErrInvalidArgument, pool, s.name)
	}
	member, err := enc.DecodeString(parts[2])
	if err != nil {
		return nil, bad("grant is not base64url")
	}
	holder, ok := holderOf(string(member))
	if !ok || validUser(holder) != nil {
		return nil, bad("grant is not a lease id and holder")
	}
	l.member, l.holder = string(member), holder
	return l, nil
}
