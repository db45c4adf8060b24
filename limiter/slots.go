package limiter

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// Concurrent-user slots: a counting semaphore shared by every replica,
// made of expiring leases and a FIFO queue of waiters, all in one Cluster
// slot:
//
//	<prefix>{s:<pool>}:h  sorted set: lease members by lease expiry (ms)
//	<prefix>{s:<pool>}:w  sorted set: waiting members by arrival (µs)
//	<prefix>{s:<pool>}:e  sorted set: waiting members by heartbeat expiry (ms)
//
// A member is a random 128-bit token followed by the holder's name, so a
// holder name can be reused while every grant stays distinct. With
// holders of up to 37 bytes (Twitch logins have at most 25) a member is at
// most 64 bytes, so sets of up to 128 stay compact listpacks. Scripts
// prune expired leases and waiters before deciding; each key's TTL is the
// time until its last entry expires, so an idle pool costs nothing.

var (
	slotsAcquire = newScript("slots_acquire.lua", 4)
	slotsRefresh = newScript("slots_refresh.lua", 1)
	slotsRelease = newScript("slots_release.lua", 1)
	slotsLeave   = newScript("slots_leave.lua", 2)
	slotsInUse   = newScript("slots_inuse.lua", 2)
)

// Errors of Slots with stated contracts; test them with errors.Is.
var (
	// ErrNoSlot: TryAcquire found every slot held, or the free ones owed
	// to callers already queued in Acquire. Nothing was taken or queued.
	// The error is a *NoSlotError, with a RetryAfter.
	ErrNoSlot = errors.New("limiter: no free slot")
	// ErrLeaseLost: Refresh or Release found the lease no longer held: it
	// was released already, or it expired (after which its slot may belong
	// to someone else, whose lease this never touches). The caller must
	// treat the slot as gone.
	ErrLeaseLost = errors.New("limiter: slot lease lost")
)

const (
	// maxSlotLease bounds a lease: a crashed replica's slots come back
	// within this long.
	maxSlotLease = 24 * time.Hour
	// pollMin and pollMax bound Acquire's polling: it starts at pollMin
	// and doubles up to min(lease/4, pollMax), so a freed slot is taken
	// within about 50 ms without hammering Redis.
	pollMin = time.Millisecond
	pollMax = 50 * time.Millisecond
	// minWaiterTTL is the shortest a waiter's heartbeat lasts: a waiter
	// that stalls longer (GC, a noisy host) drops out and rejoins at its
	// original place; a crashed one holds up the queue at most this long.
	minWaiterTTL = 2 * time.Second
)

// Slots is a pool of Size slots shared by every replica: at most Size
// holders (users being served by the LLM) hold one at a time. A slot is a
// lease that expires unless refreshed, so a replica that crashes loses its
// slots after one lease. TryAcquire takes a free slot or fails at once;
// Acquire queues first come, first served until a slot frees or its
// context ends.
//
// With Size 2 and a 30 s Lease, ann and bob take a slot at 12:00:00; cat's
// TryAcquire at 12:00:10 gets a *NoSlotError with RetryAfter 20s (when
// the first lease expires, unless released sooner), and cat's Acquire
// returns as soon as ann or bob calls Release.
//
// Build Slots with Limiter.Slots; the zero value is not usable. Slots is
// immutable and safe for concurrent use; Slots of the same name on one
// Limiter share the pool in Redis and, under FailLocal, one in-process
// pool.
type Slots struct {
	l       *Limiter
	name    string
	size    int
	lease   time.Duration
	holders string
	waiters string
	alive   string
	local   *localSlots
	owed    *owedLeaves
}

// SlotsSettings configure a Slots pool. Zero fields take
// Config.MaxConcurrentUsers and Config.SlotLease.
type SlotsSettings struct {
	// Size is how many slots the pool has, in [1, 1<<20].
	Size int
	// Lease is how long a slot stays held without a Refresh, in [1ms, 24h]
	// (whole milliseconds count).
	Lease time.Duration
}

// Slots returns the pool name (non-empty UTF-8 of at most MaxNameLen
// bytes). Invalid settings, including a Lease longer than
// Config.MaxIdleTime, are an error wrapping ErrInvalidArgument; Slots does
// not contact Redis.
func (l *Limiter) Slots(name string, s SlotsSettings) (*Slots, error) {
	if err := l.validPolicy("Slots", "slot pool", name); err != nil {
		return nil, err
	}
	s.Size = cmp.Or(s.Size, l.cfg.MaxConcurrentUsers)
	s.Lease = cmp.Or(s.Lease, l.cfg.SlotLease)
	if s.Size < 1 || s.Size > maxSlots {
		return nil, fmt.Errorf("%w: slot pool %q: size must be between 1 and %d, got %d (0 takes Config.MaxConcurrentUsers)", ErrInvalidArgument, name, maxSlots, s.Size)
	}
	if s.Lease < time.Millisecond || s.Lease > maxSlotLease {
		return nil, fmt.Errorf("%w: slot pool %q: lease must be between 1ms and %v, got %v (0 takes Config.SlotLease)", ErrInvalidArgument, name, maxSlotLease, s.Lease)
	}
	if s.Lease > l.cfg.MaxIdleTime {
		return nil, fmt.Errorf("%w: slot pool %q: lease %v is longer than Config.MaxIdleTime (%v)", ErrInvalidArgument, name, s.Lease, l.cfg.MaxIdleTime)
	}
	return &Slots{
		l:       l,
		name:    name,
		size:    s.Size,
		lease:   s.Lease,
		holders: l.key("s", name, ":h"),
		waiters: l.key("s", name, ":w"),
		alive:   l.key("s", name, ":e"),
		local:   l.fallback.slots(name),
		owed:    l.fallback.owedLeaves(name),
	}, nil
}

// Name returns the pool's name.
func (s *Slots) Name() string { return s.name }

// Size returns how many slots the pool has.
func (s *Slots) Size() int { return s.size }

func (s *Slots) check(holder string) error {
	if err := s.checkPool(); err != nil {
		return err
	}
	if err := validUser(holder); err != nil {
		return fmt.Errorf("%w (holder of slot pool %q)", err, s.name)
	}
	return nil
}

func (s *Slots) checkPool() error {
	if s == nil {
		return fmt.Errorf("%w: nil Slots; use Limiter.Slots", ErrInvalidArgument)
	}
	if s.l == nil || s.local == nil {
		return fmt.Errorf("%w: zero Slots; use Limiter.Slots", ErrInvalidArgument)
	}
	return nil
}

// pollCap is the longest Acquire sleeps between polls.
func (s *Slots) pollCap() time.Duration {
	return max(pollMin, min(s.lease/4, pollMax))
}

// waiterTTL is how long a waiter stays queued without polling: many polls
// long, even when each poll takes the whole RedisTimeout, but never past
// MaxIdleTime (a waiter that lapses rejoins at its place on its next poll).
func (s *Slots) waiterTTL() time.Duration {
	return min(s.l.cfg.MaxIdleTime, max(minWaiterTTL, 4*(s.pollCap()+s.l.cfg.RedisTimeout)))
}

// TryAcquire takes a slot for holder if one is free and no earlier caller
// is queued for it in Acquire; otherwise it returns at once a *NoSlotError
// (wrapping ErrNoSlot) that says when to try again. holder names the user
// (ErrInvalidUser rules); the same holder may hold several leases. If the
// call fails after Redis may have granted the slot (a lost reply), the
// grant is taken back with the pool's next acquisition from this process,
// at the latest when its lease expires. While Redis cannot be reached it follows
// Config.SlotsOnRedisError: FailLocal takes a slot of an in-process pool
// of the same size, FailOpen returns a lease that holds nothing, both
// marked Degraded; FailClosed returns an error wrapping
// ErrRedisUnavailable.
func (s *Slots) TryAcquire(ctx context.Context, holder string) (*Lease, error) {
	if err := s.check(holder); err != nil {
		return nil, err
	}
	member := newMember(holder)
	r, err := s.acquireOnce(ctx, member, false, 0)
	if err != nil {
		if callerDone(ctx) != nil || IsUnavailable(err) {
			// Redis may have granted the slot and lost only the reply.
			s.owe(member)
		}
		return s.fallback(ctx, member, holder, false, err)
	}
	if !r.granted {
		return nil, s.noSlot(r.hint, false)
	}
	return s.granted(&Lease{s: s, holder: holder, member: member}, r.remaining), nil
}

// acquireReply is slots_acquire.lua's reply.
type acquireReply struct {
	granted   bool
	remaining int           // free slots left, when granted
	position  int           // place in the queue (0: first), when waiting
	arrival   int64         // µs, to pass to the next poll
	hint      time.Duration // until the earliest lease expires, when full
}

// acquireOnce runs slots_acquire.lua once for member: as TryAcquire, or as
// one poll of Acquire (wait) with the arrival of the previous poll.
func (s *Slots) acquireOnce(ctx context.Context, member string, wait bool, arrival int64) (acquireReply, error) {
	mode := 0
	if wait {
		mode = 1
	}
	owed := s.owed.take(time.Now())
	args := make([]any, 0, 6+len(owed))
	args = append(args, s.size, ms(s.lease), member, mode, ms(s.waiterTTL()), arrival)
	for _, o := range owed {
		args = append(args, o.member)
	}
	r, err := s.l.run(ctx, slotsAcquire, []string{s.holders, s.waiters, s.alive}, args...)
	if err != nil {
		s.owed.restore(owed)
		return acquireReply{}, err
	}
	if r[0] == 1 {
		return acquireReply{granted: true, remaining: int(r[1])}, nil
	}
	return acquireReply{position: int(r[1]), arrival: r[2], hint: fromMs(r[3])}, nil
}

// Acquire takes a slot for holder, waiting first come, first served: a
// caller that started waiting earlier is served first, across replicas,
// and TryAcquire never takes a slot a waiter is owed. It returns when it
// holds a slot, or with an error when ctx ends (wrapping ctx.Err()),
// within 50 ms, having given up its place in the queue. holder and the
// Redis failure modes are as for TryAcquire; under FailLocal, a wait that
// started on Redis continues in the in-process pool's queue, and under
// FailClosed the error ends the wait.
//
// It polls Redis from the calling goroutine (Slots starts none): the pause
// between polls starts at 1 ms and doubles up to min(Lease/4, 50 ms), cut
// short when the earliest lease expires sooner, so a freed slot is taken
// within about 50 ms. A waiter that stops polling (its replica crashed) is
// dropped once its heartbeat lapses: the larger of 2 s and
// 4*(pause+Config.RedisTimeout), at most Config.MaxIdleTime.
func (s *Slots) Acquire(ctx context.Context, holder string) (lease *Lease, err error) {
	if err := s.check(holder); err != nil {
		return nil, err
	}
	member := newMember(holder)
	var (
		arrival int64 // µs, from Redis: our place in the queue
		inLocal bool  // in the in-process queue
		down    bool  // the last poll found Redis unreachable
		sleep   = pollMin
		sl      sleeper
		pollCap = s.pollCap()
	)
	defer func() {
		sl.stop()
		if inLocal && (lease == nil || !lease.local) {
			s.local.leave(member)
		}
		// Unless Redis granted the slot, take member out of Redis's queue
		// (and holders, in case a grant's reply was lost): at once while
		// Redis answers, so the waiters behind need not wait for this
		// one's heartbeat to lapse; when Redis is out of reach, on the
		// pool's next acquisition (slots_takeback.go).
		switch {
		case lease != nil && !lease.Degraded():
		case lease == nil && !down:
			s.leaveNow(ctx, member)
		default:
			s.owe(member)
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("limiter: waiting for a slot in pool %q: %w", s.name, err)
		}
		r, err := s.acquireOnce(ctx, member, true, arrival)
		down = err != nil && isOutage(ctx, err)
		switch {
		case err == nil && r.granted:
			return s.granted(&Lease{s: s, holder: holder, member: member}, r.remaining), nil
		case err == nil:
			arrival = r.arrival
		case callerDone(ctx) != nil:
			return nil, fmt.Errorf("limiter: waiting for a slot in pool %q: %w", s.name, callerDone(ctx))
		case !IsUnavailable(err):
			return nil, err
		default:
			if s.l.cfg.SlotsOnRedisError != FailLocal {
				return s.fallback(ctx, member, holder, true, err)
			}
			inLocal = true
			if ok, _ := s.local.acquire(member, s.size, s.lease, true); ok {
				return s.granted(&Lease{s: s, holder: holder, member: member, local: true}, Unlimited), nil
			}
		}
		wait := sleep
		if r.hint > 0 && r.hint < wait {
			wait = r.hint
		}
		sleep = min(2*sleep, pollCap)
		if err := sl.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("limiter: waiting for a slot in pool %q: %w", s.name, err)
		}
	}
}

// fallback handles a failed acquisition per Config.SlotsOnRedisError.
func (s *Slots) fallback(ctx context.Context, member, holder string, wait bool, err error) (*Lease, error) {
	if !isOutage(ctx, err) {
		return nil, err
	}
	switch s.l.cfg.SlotsOnRedisError {
	case FailOpen:
		return s.granted(&Lease{s: s, holder: holder, member: member, open: true}, Unlimited), nil
	case FailClosed:
		s.l.observe(PolicySlots, Decision{Reason: ReasonRedisDown, RetryAfter: redisRetryInterval, Degraded: true})
		return nil, fmt.Errorf("limiter: slot pool %q fails closed: %w: %w", s.name, ErrRedisUnavailable, err)
	}
	ok, retry := s.local.acquire(member, s.size, s.lease, wait)
	if ok {
		return s.granted(&Lease{s: s, holder: holder, member: member, local: true}, Unlimited), nil
	}
	return nil, s.noSlot(retry, true)
}

// granted reports lease's grant to the Observer, with remaining free
// slots (Unlimited for a degraded lease), and returns lease.
func (s *Slots) granted(lease *Lease, remaining int) *Lease {
	s.l.observe(PolicySlots, Decision{Allowed: true, Remaining: remaining, Degraded: lease.Degraded()})
	return lease
}

// noSlot reports a denial to the Observer and returns it as a
// *NoSlotError; retry is how long until the earliest lease expires, 0 when
// not every slot is held (the free ones are owed to queued waiters).
func (s *Slots) noSlot(retry time.Duration, degraded bool) error {
	if retry <= 0 {
		retry = pollMax // about when the waiters will have taken theirs
	}
	retry = max(retry, time.Millisecond)
	s.l.observe(PolicySlots, Decision{Reason: ReasonSlots, RetryAfter: retry, Degraded: degraded})
	return &NoSlotError{Pool: s.name, Size: s.size, RetryAfter: retry, Degraded: degraded}
}

// NoSlotError is the error TryAcquire returns when it takes no slot. It
// wraps ErrNoSlot; errors.As finds it for the RetryAfter.
type NoSlotError struct {
	Pool string
	Size int
	// RetryAfter is when a slot may be free, at least 1ms: when the
	// earliest lease expires if every slot is held (a Release may free
	// one sooner), otherwise 50ms, about when the waiters queued ahead
	// will have taken the free ones.
	RetryAfter time.Duration
	// Degraded is true when the in-process pool decided (FailLocal).
	Degraded bool
}

func (e *NoSlotError) Error() string {
	if e.Degraded {
		return fmt.Sprintf("%v in pool %q (size %d, in-process while Redis is unavailable)", ErrNoSlot, e.Pool, e.Size)
	}
	return fmt.Sprintf("%v in pool %q (size %d)", ErrNoSlot, e.Pool, e.Size)
}

// Unwrap returns ErrNoSlot.
func (e *NoSlotError) Unwrap() error { return ErrNoSlot }

// InUse returns how many slots are held now across all replicas, for
// metrics. It reads Redis only (leases held in-process under FailLocal are
// not counted); errors are returned as they are.
func (s *Slots) InUse(ctx context.Context) (int, error) {
	held, _, err := s.Usage(ctx)
	return held, err
}

// Waiting returns how many callers are queued in Acquire now across all
// replicas, for metrics; like InUse it reads Redis only.
func (s *Slots) Waiting(ctx context.Context) (int, error) {
	_, waiting, err := s.Usage(ctx)
	return waiting, err
}

// Usage returns InUse and Waiting from one read of Redis, so the two agree
// (two calls could straddle a grant).
func (s *Slots) Usage(ctx context.Context) (held, waiting int, err error) {
	if err := s.checkPool(); err != nil {
		return 0, 0, err
	}
	r, err := s.l.run(ctx, slotsInUse, []string{s.holders, s.alive})
	if err != nil {
		return 0, 0, err
	}
	return int(r[0]), int(r[1]), nil
}

// newMember returns a fresh lease member: a random 128-bit token (26
// base32 characters), then the holder's name.
func newMember(holder string) string {
	return rand.Text() + ":" + holder
}

// memberIDLen is the length of rand.Text's output, a member's id.
const memberIDLen = 26

// holderOf returns the holder of a member built by newMember, and whether
// member has that form.
func holderOf(member string) (string, bool) {
	if len(member) < memberIDLen+1 || member[memberIDLen] != ':' {
		return "", false
	}
	for _, c := range member[:memberIDLen] {
		if (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return "", false
		}
	}
	return member[memberIDLen+1:], true
}
