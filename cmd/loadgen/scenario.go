package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// populateWorkers write users concurrently: one goroutine cannot keep
// Redis busy across a round trip. On a 2-core machine 16 to 32 write
// fastest (64 lose time to scheduling); a remote Redis would want more.
const populateWorkers = 32

// settleTime lets Redis finish rehashing its key tables (serverCron does
// ~1 ms of it every 100 ms) before used_memory is read: mid-rehash both
// the old and the new table are allocated.
const settleTime = 200 * time.Millisecond

// expiryTimeout bounds the wait for Redis to reclaim users' expired keys:
// 30 s, plus a second per 50,000 users (Redis expires a few hundred
// thousand keys per second, in a share of its time).
func expiryTimeout(users int) time.Duration {
	return 30*time.Second + time.Duration(users/50_000)*time.Second
}

// memorySample is how many keys MEMORY USAGE looks at per test.
const memorySample = 200

// newKeyer is a Limiter used only to name keys (Limiter.UserKeys): its
// client never connects.
func newKeyer(prefix string) (*limiter.Limiter, error) {
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	l, err := limiter.New(redis.NewClient(&redis.Options{}), cfg)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	return l, nil
}

// userKeys are the keys that can hold user's state, as the library names
// them (a test leaves one of them per user).
func (b *bench) userKeys(user string) []string {
	keys, _ := b.keyer.UserKeys(user)
	return keys
}

// testConfig is the limiter configuration of a test's main pass. The
// local deny cache is off so every decision is a Redis round trip.
func testConfig(test, prefix string) limiter.Config {
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.LocalCacheSize = 0
	cfg.RedisTimeout = 10 * time.Second // a loaded 2-core machine, not a bot
	// Never measure the in-process fallback: a Redis that does not answer
	// is an error here (see errDegraded), not a degraded decision.
	cfg.OnRedisError = limiter.FailClosed
	cfg.BucketOnRedisError = limiter.FailClosed
	cfg.BackoffOnRedisError = limiter.FailClosed
	cfg.SlotsOnRedisError = limiter.FailClosed
	switch test {
	case testCooldown:
		// One string key per user. An hour instead of the study's 10 s
		// keeps every key alive through the run; the TTL's length does not
		// change what the key costs.
		cfg.UserCooldown = time.Hour
		cfg.MaxRequestsPerUserHour = 0
	case testHourly:
		cfg.UserCooldown = 0 // the window alone, as the study's second test
	case testFull:
		// DefaultConfig: 10 s cooldown + 20 per hour.
	}
	return cfg
}

// expiryConfig is the configuration of a test's idle-expiry pass: the same
// layout with every TTL at most idle.
func expiryConfig(test, prefix string, idle time.Duration) limiter.Config {
	cfg := testConfig(test, prefix)
	cfg.MaxIdleTime = idle
	// Only users are written; the pool and bucket defaults must still fit
	// within MaxIdleTime to validate.
	cfg.SlotLease, cfg.APIRates = min(cfg.SlotLease, idle), nil
	switch test {
	case testCooldown:
		cfg.UserCooldown = idle
	case testHourly:
		cfg.UserWindow = idle
	case testFull:
		cfg.UserWindow = idle
		cfg.UserCooldown = max(idle/100, time.Millisecond)
	}
	return cfg
}

// describeConfig says in a few words what a configuration keeps.
func describeConfig(cfg limiter.Config) string {
	var parts []string
	if cfg.UserCooldown > 0 {
		parts = append(parts, "cooldown "+cfg.UserCooldown.String())
	}
	if cfg.MaxRequestsPerUserHour > 0 {
		parts = append(parts, fmt.Sprintf("window %d per %v", cfg.MaxRequestsPerUserHour, cfg.UserWindow))
	}
	return strings.Join(parts, ", ")
}

// acceptTimes returns n accept times, ascending, inside (now-span, now],
// at least gap apart as the cooldown would have left them. It needs
// span > (n-1)*gap.
func acceptTimes(rng *rand.Rand, n int, now time.Time, span, gap time.Duration) []time.Time {
	free := span - time.Duration(n-1)*gap
	if free < 1 {
		free = 1
	}
	offs := make([]int64, n)
	for j := range offs {
		offs[j] = rng.Int64N(int64(free)) + 1
	}
	slices.Sort(offs)
	times := make([]time.Time, n)
	start := now.Add(-span)
	for j, off := range offs {
		times[j] = start.Add(time.Duration(off) + time.Duration(j)*gap)
	}
	return times
}

// Streams of the --seed generator, so each phase is repeatable on its own.
const (
	streamPopulate = iota + 1
	streamExpiry
	streamLookups
	streamSample
	streamThroughput
)

func testIndex(test string) uint64 { return uint64(slices.Index(allTests, test) + 1) }

// rngFor is the generator of one (test, stream, item).
func (b *bench) rngFor(test string, stream, item uint64) *rand.Rand {
	return rand.New(rand.NewPCG(b.o.seed, testIndex(test)<<56|stream<<48|item))
}

// writeUser leaves user i's state through the library: Allow for the
// cooldown test (a first request), Import of past accept times spread over
// the window for the others.
func (b *bench) writeUser(ctx context.Context, l *limiter.Limiter, test string, stream uint64, i int) error {
	cfg := l.Config()
	user := userName(i)
	if test == testCooldown {
		d, err := l.Allow(ctx, user)
		if err != nil {
			return err
		}
		if d.Degraded {
			return errDegraded(cfg)
		}
		if !d.Allowed {
			return fmt.Errorf("loadgen: %s was already in cooldown: keys under %s existed before the run", user, cfg.KeyPrefix)
		}
		return nil
	}
	rng := b.rngFor(test, stream, uint64(i))
	n := hourlyMessages
	gap := cfg.UserCooldown
	if test == testFull {
		n = fullMinMessages + rng.IntN(fullMaxMessages-fullMinMessages+1)
	}
	// Main pass: within the last hour, less a minute so no entry leaves
	// the window while the run measures. Expiry pass: within the last half
	// window (--idle).
	span := cfg.UserWindow - time.Minute
	if stream == streamExpiry {
		span = cfg.UserWindow / 2
	}
	times := acceptTimes(rng, n, time.Now(), span, gap)
	if stream == streamExpiry {
		// The newest request is "now" by Redis's clock however long the
		// call queued (Import counts a future time as now): every key is
		// created, and lives exactly --idle from its write. With times in
		// the past, a call delayed by more than a short --idle would find
		// them all out of the window and write nothing.
		times[n-1] = time.Now().Add(cfg.UserWindow)
	}
	return l.Import(ctx, user, times)
}

// populate writes users 0..n-1 from populateWorkers goroutines.
func (b *bench) populate(ctx context.Context, l *limiter.Limiter, test string, stream uint64, n int, label string) (time.Duration, error) {
	bar := b.progress.start(label, n)
	defer bar.done()
	start := time.Now()
	err := parallel(ctx, n, populateWorkers, func(ctx context.Context, i int) error {
		if err := b.writeUser(ctx, l, test, stream, i); err != nil {
			return err
		}
		bar.add(1)
		return nil
	})
	return time.Since(start), err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// settle waits until Redis has finished rehashing, so that used_memory
// does not count two key tables.
func (b *bench) settle(ctx context.Context) error {
	if err := sleep(ctx, settleTime); err != nil {
		return err
	}
	return b.t.waitRehashed(ctx)
}

// settledMemory is used_memory of each master once settled.
func (b *bench) settledMemory(ctx context.Context) (map[string]int64, error) {
	if !b.memory {
		return nil, nil
	}
	if err := b.settle(ctx); err != nil {
		return nil, err
	}
	return b.t.usedMemoryByNode(ctx)
}

// newLimiter builds the test's Limiter on a worker client.
func newLimiter(w redis.UniversalClient, cfg limiter.Config) (*limiter.Limiter, error) {
	cfg.Observer = redisErrors
	l, err := limiter.New(w, cfg)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	return l, nil
}

// warmUp loads every script the test runs (Redis keeps them, a few kB,
// for the server's lifetime), so the baseline already holds them.
func (b *bench) warmUp(ctx context.Context, l *limiter.Limiter, test string) error {
	if err := loadScripts(ctx, l, test); err != nil {
		return fmt.Errorf("loadgen: warm-up: %w", err)
	}
	return nil
}

func loadScripts(ctx context.Context, l *limiter.Limiter, test string) error {
	const warm = "loadgen_warmup"
	// Twice: the second is a denial, which runs other commands.
	for i := 0; i < 2; i++ {
		if _, err := l.Allow(ctx, warm); err != nil {
			return err
		}
	}
	if err := l.Import(ctx, warm, []time.Time{time.Now()}); err != nil || test != testFull {
		return err
	}
	if _, err := writeSharedState(ctx, l); err != nil {
		return err
	}
	// The hot-key phase's one script writeSharedState does not run.
	bo, err := l.Backoff(llmPool, limiter.BackoffSettings{})
	if err != nil {
		return err
	}
	_, err = bo.Check(ctx, studyEndpoints[0])
	return err
}

// warmUpUsers is the size of the server-wide warm-up round.
const warmUpUsers = 1_000

// warmUpServer runs every selected test once on a few users with all the
// worker connections, then deletes them: a fresh server allocates some
// memory once (~200 kB of connection bookkeeping, a latency histogram per
// command) that would otherwise land in the first test's figures.
func (b *bench) warmUpServer(ctx context.Context) error {
	if err := b.t.fillBacklogs(ctx, b.o.prefix); err != nil {
		return err
	}
	n := min(warmUpUsers, slices.Max(b.o.users))
	for _, test := range b.o.tests {
		cfg := testConfig(test, b.o.prefix)
		err := b.withLimiter(cfg, func(l *limiter.Limiter, _ redis.UniversalClient) error {
			if err := b.warmUp(ctx, l, test); err != nil {
				return err
			}
			if _, err := b.populate(ctx, l, test, streamPopulate, n, "warm-up"); err != nil {
				return err
			}
			_, _, err := throughput(ctx, b.o.goroutines, minDuration, [2]uint64{b.o.seed, 0}, lookupOp(l, n, nil, nil))
			return err
		})
		if err != nil {
			return err
		}
		// Redis 7 allocates a latency histogram (~25-50 kB) the first
		// time each command runs: run the measuring commands once too.
		// Best effort: a server without them (miniredis) measures no memory.
		keys := b.userKeys(userName(0))
		_, _, _ = b.t.memoryUsage(ctx, keys)
		_ = b.t.with(ctx, func(c redis.UniversalClient) error {
			for _, k := range keys {
				_ = c.ObjectEncoding(ctx, k).Err()
			}
			return nil
		})
		if _, _, err := b.t.purge(ctx, b.o.prefix); err != nil {
			return err
		}
	}
	return nil
}

// redisErrors remembers the last error of any Limiter loadgen builds: a
// policy that fails closed returns a Degraded decision and no error, and
// the operator needs to know why.
var redisErrors = &errorObserver{}

// errorObserver is a limiter.Observer that keeps the last Redis error.
type errorObserver struct{ last atomic.Pointer[string] }

func (o *errorObserver) ObserveDecision(string, limiter.Decision) {}

func (o *errorObserver) ObserveRedis(op string, _ time.Duration, err error) {
	if err != nil {
		msg := op + ": " + err.Error()
		o.last.Store(&msg)
	}
}

// errDegraded: Redis did not answer a decision, so the library fell back
// (closed); loadgen reports that instead of figures.
func errDegraded(cfg limiter.Config) error {
	why := "no Redis error recorded"
	if m := redisErrors.last.Load(); m != nil {
		why = "last Redis error: " + *m
	}
	return fmt.Errorf("loadgen: Redis did not answer a decision (within %v; the limiter failed closed; %s): %w", cfg.RedisTimeout, why, limiter.ErrRedisUnavailable)
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// msOrNil is nil for a moment that never came (timeout).
func msOrNil(d time.Duration) *float64 {
	if d == 0 {
		return nil
	}
	v := ms(d)
	return &v
}

// The study's full RateLimiter beside its users: the LLM pool (slots of
// max_concurrent_users) and its two endpoints (endpoint_failures).
const llmPool = "llm"

// writeSharedState writes what the study's full RateLimiter holds beside its
// users: one GCRA key per external API in Config.APIRates (wikipedia, igdb)
// after one call each, the LLM pool with every slot held (7 leases), and
// one failure on each of its two LLM endpoints (endpoint_failures). It is
// the same few keys at any number of users.
func writeSharedState(ctx context.Context, l *limiter.Limiter) (SharedState, error) {
	cfg := l.Config()
	var parts []string
	apis := make([]string, 0, len(cfg.APIRates))
	for name := range cfg.APIRates {
		apis = append(apis, name)
	}
	slices.Sort(apis)
	for _, name := range apis {
		b, err := l.Bucket(name, limiter.BucketSettings{})
		if err != nil {
			return SharedState{}, fmt.Errorf("loadgen: %w", err)
		}
		d, err := b.Allow(ctx)
		if err != nil {
			return SharedState{}, fmt.Errorf("loadgen: API %s: %w", name, err)
		}
		if d.Degraded {
			return SharedState{}, errDegraded(cfg)
		}
	}
	parts = append(parts, fmt.Sprintf("API rates of %s (Bucket)", strings.Join(apis, ", ")))
	pool, err := l.Slots(llmPool, limiter.SlotsSettings{})
	if err != nil {
		return SharedState{}, fmt.Errorf("loadgen: %w", err)
	}
	for i := 0; i < cfg.MaxConcurrentUsers; i++ {
		lease, err := pool.TryAcquire(ctx, userName(i))
		if err != nil {
			return SharedState{}, fmt.Errorf("loadgen: slot %d of %d: %w", i+1, cfg.MaxConcurrentUsers, err)
		}
		if lease.Degraded() {
			return SharedState{}, errDegraded(cfg)
		}
	}
	parts = append(parts, fmt.Sprintf("%d of %d LLM slots held for %v (Slots)", cfg.MaxConcurrentUsers, cfg.MaxConcurrentUsers, cfg.SlotLease))
	bo, err := l.Backoff(llmPool, limiter.BackoffSettings{})
	if err != nil {
		return SharedState{}, fmt.Errorf("loadgen: %w", err)
	}
	for _, ep := range studyEndpoints {
		d, err := bo.Failure(ctx, ep)
		if err != nil {
			return SharedState{}, fmt.Errorf("loadgen: endpoint %s: %w", ep, err)
		}
		if d.Degraded {
			return SharedState{}, errDegraded(cfg)
		}
	}
	parts = append(parts, "one failure on each of "+strings.Join(studyEndpoints, " and ")+" (Backoff)")
	return SharedState{Written: strings.Join(parts, "; ")}, nil
}
