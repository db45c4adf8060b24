package limiter

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// External API rates, decided by bucket_allow.lua with GCRA on one key
// per API:
//
//	<prefix>{api:<name>}:t   string: the theoretical arrival time in µs
//
// The key lives only while it matters (its TTL is the time until the
// bucket is full again), so an idle API costs nothing.

var bucketAllow = newScript("bucket_allow.lua", 4)

const (
	// maxBucketRefill bounds burst * interval, the time an empty bucket
	// takes to fill: it keeps TAT below 2^53 µs, where Lua's doubles are
	// still exact integers, and turns typos (a rate of 1e-9) into errors.
	maxBucketRefill = maxPolicyDuration
)

// A Bucket limits calls to one external API across every replica, with the
// generic cell rate algorithm (GCRA): it admits bursts of up to Burst calls
// and PerSecond calls per second on average, so over any span of W seconds
// at most Burst + W*PerSecond calls pass. Its methods mirror
// golang.org/x/time/rate's Allow/AllowN/Wait/WaitN.
//
// The emission interval (1/PerSecond) is rounded up to a whole
// microsecond, so the rate is never exceeded.
//
// At 4 per second with a burst of 2, two calls at 12:00:00.000 pass
// (Remaining 1, then 0); a third at 12:00:00.100 is denied with RetryAfter
// 150ms and ResetAfter 400ms; one at 12:00:00.250 passes.
//
// Build a Bucket with Limiter.Bucket; the zero value is not usable. A
// Bucket is immutable and safe for concurrent use; Buckets of the same name
// on one Limiter share the API's state in Redis and, under FailLocal, one
// in-process fallback.
type Bucket struct {
	l         *Limiter
	name      string
	key       string
	perSecond float64
	interval  int64 // emission interval, µs
	burst     int
	local     *localGCRA
}

// BucketSettings configure a Bucket. Zero fields take the API's entry in
// Config.APIRates; a PerSecond given without a Burst means a burst of 1.
type BucketSettings struct {
	// PerSecond is the sustained rate, in (0, 1e6] calls per second.
	PerSecond float64
	// Burst is how many calls may go at once after a quiet spell, in
	// [1, 1<<20]; Burst/PerSecond (the time an empty bucket takes to
	// refill) is at most 30 days.
	Burst int
}

// Bucket returns the Bucket of the API name (non-empty UTF-8 of at most
// MaxNameLen bytes). Zero settings take name's entry in Config.APIRates:
// an API that is not listed there is then an error wrapping ErrInvalidName
// that names the configured ones. Invalid settings, including a refill time
// (Burst/PerSecond) longer than Config.MaxIdleTime, are an error wrapping
// ErrInvalidArgument. Bucket does not contact Redis.
func (l *Limiter) Bucket(name string, s BucketSettings) (*Bucket, error) {
	if err := l.validPolicy("Bucket", "API", name); err != nil {
		return nil, err
	}
	if s.PerSecond == 0 {
		r, ok := l.cfg.APIRates[name]
		if !ok {
			known := make([]string, 0, len(l.cfg.APIRates))
			for n := range l.cfg.APIRates {
				known = append(known, n)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("%w: API %q has no PerSecond and is not in Config.APIRates (%s); configured: [%s]",
				ErrInvalidName, name, envName("APIRates"), strings.Join(known, ", "))
		}
		s.PerSecond = r.PerSecond
		s.Burst = cmp.Or(s.Burst, r.Burst)
	}
	s.Burst = cmp.Or(s.Burst, 1)
	if err := validRate(name, s.PerSecond, s.Burst); err != nil {
		return nil, err
	}
	if ttl := bucketKeyTTL(s.PerSecond, s.Burst); ttl > l.cfg.MaxIdleTime {
		return nil, fmt.Errorf("%w: API %q: burst %d at %g per second refills in %v, longer than Config.MaxIdleTime (%v)",
			ErrInvalidArgument, name, s.Burst, s.PerSecond, ttl, l.cfg.MaxIdleTime)
	}
	return &Bucket{
		l:         l,
		name:      name,
		key:       l.key("api", name, ":t"),
		perSecond: s.PerSecond,
		interval:  int64(math.Ceil(1e6 / s.PerSecond)),
		burst:     s.Burst,
		local:     l.fallback.gcra(name),
	}, nil
}

// validRate checks a Bucket's rate and burst.
func validRate(name string, perSecond float64, burst int) error {
	if math.IsNaN(perSecond) || perSecond <= 0 || perSecond > maxAPIRate {
		return fmt.Errorf("%w: API %q: rate must be above 0 and at most %g per second, got %g", ErrInvalidArgument, name, float64(maxAPIRate), perSecond)
	}
	if burst < 1 || burst > maxBurst {
		return fmt.Errorf("%w: API %q: burst must be between 1 and %d, got %d", ErrInvalidArgument, name, maxBurst, burst)
	}
	if refill := float64(burst) / perSecond; refill > maxBucketRefill.Seconds() {
		return fmt.Errorf("%w: API %q: burst %d at %g per second takes %.0f s to refill, at most %v", ErrInvalidArgument, name, burst, perSecond, refill, maxBucketRefill)
	}
	return nil
}

// Name returns the API's name.
func (b *Bucket) Name() string { return b.name }

// Limit returns the rate in calls per second and the burst in force,
// Config.APIRates' where the settings left them zero.
func (b *Bucket) Limit() (perSecond float64, burst int) { return b.perSecond, b.burst }

// Allow is AllowN(ctx, 1).
func (b *Bucket) Allow(ctx context.Context) (Decision, error) {
	return b.AllowN(ctx, 1)
}

// AllowN decides whether n calls may happen now and takes n tokens when
// they may. A denied request takes nothing; its Decision says exactly when
// to retry (RetryAfter), how many tokens are left (Remaining) and when the
// bucket will be full (ResetAfter). Reason is ReasonRate when denied.
//
// n must be between 1 and the burst (more could never pass): anything else
// is ErrInvalidArgument. While Redis cannot be reached, the Decision follows
// Config.BucketOnRedisError and is marked Degraded: FailLocal runs the same
// GCRA in this process, FailOpen allows, FailClosed denies with
// ReasonRedisDown and a RetryAfter of 1s (Redis is tried again after
// that). A key under the API's name that Floodgate did not write is
// ErrForeignKey; other Redis errors are returned.
func (b *Bucket) AllowN(ctx context.Context, n int) (Decision, error) {
	if err := b.check(n); err != nil {
		return Decision{}, err
	}
	r, err := b.l.run(ctx, bucketAllow, []string{b.key}, b.interval, b.burst, n)
	if err != nil {
		return b.l.degrade(ctx, PolicyBucket, b.l.cfg.BucketOnRedisError, err, func() Decision {
			return b.local.allow(b.interval, b.burst, n)
		})
	}
	if r[0] < 0 {
		return Decision{}, fmt.Errorf("limiter: bucket_allow on %q (API %q): %w", b.key, b.name, ErrForeignKey)
	}
	d := Decision{
		Allowed:    r[0] == 1,
		Remaining:  int(r[1]),
		RetryAfter: time.Duration(r[2]) * time.Microsecond,
		ResetAfter: time.Duration(r[3]) * time.Microsecond,
	}
	if !d.Allowed {
		d.Reason = ReasonRate
	}
	return b.l.observe(PolicyBucket, d), nil
}

func (b *Bucket) check(n int) error {
	if b == nil {
		return fmt.Errorf("%w: nil Bucket; use Limiter.Bucket", ErrInvalidArgument)
	}
	if b.l == nil || b.local == nil {
		return fmt.Errorf("%w: zero Bucket; use Limiter.Bucket", ErrInvalidArgument)
	}
	if n < 1 || n > b.burst {
		return fmt.Errorf("%w: API %q: n must be between 1 and the burst %d, got %d", ErrInvalidArgument, b.name, b.burst, n)
	}
	return nil
}

// Wait is WaitN(ctx, 1).
func (b *Bucket) Wait(ctx context.Context) (Decision, error) {
	return b.WaitN(ctx, 1)
}

// WaitN blocks until n calls may happen, takes the tokens and returns the
// allowing Decision, as Limiter.Wait and Backoff.Wait do; or returns an
// error when ctx ends first, when ctx's deadline comes before the tokens
// would (at once, without waiting; the error wraps
// context.DeadlineExceeded), when n is invalid, or on a Redis error that
// Config.BucketOnRedisError does not cover. With an error the Decision is
// the last denial seen (its RetryAfter says when to try again), or zero if
// none was. It sleeps for each denial's RetryAfter on a timer, so it never
// spins; under FailClosed it keeps trying every second until Redis answers
// or ctx ends.
func (b *Bucket) WaitN(ctx context.Context, n int) (Decision, error) {
	if err := b.check(n); err != nil {
		return Decision{}, err
	}
	return waitFor(ctx, fmt.Sprintf("API %q", b.name), func() (Decision, error) { return b.AllowN(ctx, n) })
}
