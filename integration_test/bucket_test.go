package integration_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// Environment of the Bucket and Slots worker processes.
const (
	bsPrefixEnv = "PREFIX"                  // the test's KeyPrefix (workerLimiter)
	bsStartEnv  = "FLOODGATE_TEST_BS_START" // unix ns at which to begin
	bsForEnv    = "FLOODGATE_TEST_BS_FOR"   // how long to run
)

func init() {
	workers["bucket-flat-out"] = bucketFlatOut
}

// bsLimiterFromEnv is a Bucket or Slots worker's Limiter (workerLimiter,
// 64 connections). Redis trouble fails closed, so a slow Redis can only
// lower the counts, and gets a generous timeout on a shared, noisy machine.
func bsLimiterFromEnv(cfg limiter.Config) (*limiter.Limiter, *redis.Client, error) {
	cfg.RedisTimeout = 2 * time.Second
	cfg.BucketOnRedisError = limiter.FailClosed
	cfg.SlotsOnRedisError = limiter.FailClosed
	return workerLimiter(64, cfg)
}

// bsSchedule reads when to start and for how long, and sleeps until the
// start: every worker process begins at the same instant.
func bsSchedule() (start, end time.Time, err error) {
	ns, err := strconv.ParseInt(os.Getenv(bsStartEnv), 10, 64)
	if err != nil {
		return start, end, fmt.Errorf("%s: %v", bsStartEnv, err)
	}
	d, err := time.ParseDuration(os.Getenv(bsForEnv))
	if err != nil {
		return start, end, fmt.Errorf("%s: %v", bsForEnv, err)
	}
	start = time.Unix(0, ns)
	time.Sleep(time.Until(start))
	return start, start.Add(d), nil
}

// bucketResult is what one flat-out worker process saw.
type bucketResult struct {
	Allowed  int
	Denied   int
	Degraded int
	// ShortWaits counts denials whose RetryAfter is under 1 ms.
	ShortWaits int
	LastDone   int64 // unix ns when its last call returned
}

// The IGDB limits of the test: 4 per second, burst 2.
const (
	igdbRate  = 4
	igdbBurst = 2
)

// bucketFlatOut calls the IGDB bucket as fast as 4 goroutines can until
// the end of the schedule.
func bucketFlatOut(ctx context.Context) (any, error) {
	cfg := limiter.DefaultConfig()
	cfg.APIRates = limiter.APIRates{"igdb": {PerSecond: igdbRate, Burst: igdbBurst}}
	l, rdb, err := bsLimiterFromEnv(cfg)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	b, err := l.Bucket("igdb", limiter.BucketSettings{})
	if err != nil {
		return nil, err
	}
	_, end, err := bsSchedule()
	if err != nil {
		return nil, err
	}
	var (
		mu  sync.Mutex
		res bucketResult
	)
	err = concurrently(4, func(int) error {
		var r bucketResult
		for time.Now().Before(end) {
			d, err := b.Allow(ctx)
			if err != nil {
				return err
			}
			switch {
			case d.Degraded:
				r.Degraded++
			case d.Allowed:
				r.Allowed++
			default:
				r.Denied++
				if d.RetryAfter < time.Millisecond {
					r.ShortWaits++
				}
			}
		}
		done := time.Now().UnixNano()
		mu.Lock()
		res.Allowed += r.Allowed
		res.Denied += r.Denied
		res.Degraded += r.Degraded
		res.ShortWaits += r.ShortWaits
		res.LastDone = max(res.LastDone, done)
		mu.Unlock()
		return nil
	})
	return res, err
}

// Four replicas call a 4 req/s API flat out for 10 s: the API sees at most
// 4*10 + burst calls (GCRA admits burst + span*rate over any span), and
// not many fewer.
func TestBucketAcrossProcesses(t *testing.T) {
	skipIfShort(t) // -short keeps TestBucketOnRealRedis
	prefix := uniquePrefix(t, client(t))
	const (
		procs    = 4
		duration = 10 * time.Second
	)
	start := time.Now().Add(2 * time.Second) // time for the processes to start
	res := runWorkers[bucketResult](t, "bucket-flat-out", procs, map[string]string{
		bsPrefixEnv: prefix,
		bsStartEnv:  strconv.FormatInt(start.UnixNano(), 10),
		bsForEnv:    duration.String(),
	})
	var allowed, denied, degraded, shortWaits int
	var lastDone int64
	for i, r := range res {
		t.Logf("process %d: %d allowed, %d denied, %d degraded", i, r.Allowed, r.Denied, r.Degraded)
		shortWaits += r.ShortWaits
		allowed += r.Allowed
		denied += r.Denied
		degraded += r.Degraded
		lastDone = max(lastDone, r.LastDone)
	}
	// Every admission happened between start and the last reply. Over
	// exactly 10 s that is 4*10 + burst; a last reply arriving later than
	// one interval after the end (a very slow Redis) may add one each.
	interval := time.Second / igdbRate
	span := time.Duration(lastDone - start.UnixNano())
	bound := igdbRate*int(duration/time.Second) + igdbBurst + int(max(0, span-duration)/interval)
	t.Logf("%d processes, %v: %d calls allowed (bound %d over a span of %v, floor %d), %d denied, %d degraded",
		procs, duration, allowed, bound, span.Round(time.Millisecond), igdbRate*10-2, denied, degraded)
	if allowed > bound {
		t.Fatalf("the API saw %d calls, more than %d", allowed, bound)
	}
	if allowed < igdbRate*10-2 {
		t.Fatalf("the API saw only %d calls in %v at %d/s", allowed, duration, igdbRate)
	}
	if degraded > 0 {
		t.Fatalf("%d decisions were degraded: Redis timed out", degraded)
	}
	if shortWaits > 0 || denied == 0 {
		t.Fatalf("%d of %d denials had a RetryAfter under 1ms", shortWaits, denied)
	}
}

// Against real Redis, the TAT is an exact integer of µs and the key lives
// until the bucket is full again; Wait paces calls at the rate.
func TestBucketOnRealRedis(t *testing.T) {
	rdb := client(t)
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 2 * time.Second
	l := newLimiter(t, rdb, cfg)
	ctx := context.Background()
	b := mustBucket(t, l, "wiki", 2, 3) // 500 ms apart, burst 3
	// Every bound below counts from origin, before the first Allow (T1 in
	// Redis TIME, on this machine's clock): Redis's instant moves on
	// between calls by at most the time since origin, however loaded the
	// machine.
	origin := time.Now()
	for i, want := range []int{2, 1, 0} {
		// ResetAfter is exact at Redis's instant: T1 + (i+1)*500ms - now.
		d, err := b.Allow(ctx)
		full := time.Duration(500*(i+1)) * time.Millisecond
		if err != nil || !d.Allowed || d.Remaining != want || d.ResetAfter > full || d.ResetAfter < full-time.Since(origin) {
			t.Fatalf("Allow %d = %+v, %v (%v after the first)", i, d, err, time.Since(origin))
		}
	}
	d, err := b.Allow(ctx)
	if err != nil || d.Allowed || d.Reason != limiter.ReasonRate || d.RetryAfter <= 0 || d.RetryAfter > 500*time.Millisecond {
		t.Fatalf("4th Allow = %+v, %v", d, err)
	}
	key := l.Config().KeyPrefix + "{api:wiki}:t"
	v, err := rdb.Get(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	tat, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("TAT %q is not an integer: %v", v, err)
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// The TAT is T1 + 1.5s.
	if ahead := time.Duration(tat-now.UnixMicro()) * time.Microsecond; ahead < 1500*time.Millisecond-time.Since(origin) || ahead > 1500*time.Millisecond {
		t.Fatalf("TAT is %v ahead of Redis TIME %v after the first Allow, want 1.5s less the time since", ahead, time.Since(origin))
	}
	if pttl := rdb.PTTL(ctx, key).Val(); pttl < 1500*time.Millisecond-time.Since(origin)-time.Millisecond || pttl > 1500*time.Millisecond {
		t.Fatalf("PTTL = %v %v after the first Allow, want 1.5s less the time since", pttl, time.Since(origin))
	}
	// Wait takes the next token when it comes (T1 + 500ms), and the one
	// after (T1 + 1s): never sooner.
	for range 2 {
		if _, err := b.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(origin); took < time.Second {
		t.Fatalf("3 Allows and 2 Waits on a bucket of burst 3 at 2/s took %v, want at least 1s", took)
	}
}

// On real Redis a foreign key under a Bucket's or a pool's name is
// ErrForeignKey (a string that is no TAT, a key of the wrong type), never
// an outage, and it is left as it was.
func TestForeignKeysOnRealRedis(t *testing.T) {
	rdb := client(t)
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 2 * time.Second
	cfg.BucketOnRedisError = limiter.FailOpen
	cfg.SlotsOnRedisError = limiter.FailOpen
	l := newLimiter(t, rdb, cfg)
	ctx := context.Background()
	prefix := l.Config().KeyPrefix
	for _, c := range []struct {
		key  string
		set  func(key string) error
		call func() error
	}{
		{"{api:wiki}:t", func(k string) error { return rdb.Set(ctx, k, "hello", 0).Err() },
			func() error { _, err := mustBucket(t, l, "wiki", 2, 3).Allow(ctx); return err }},
		{"{api:wiki}:t", func(k string) error { return rdb.RPush(ctx, k, "x").Err() },
			func() error { _, err := mustBucket(t, l, "wiki", 2, 3).Allow(ctx); return err }},
		{"{s:llm}:h", func(k string) error { return rdb.Set(ctx, k, "hello", 0).Err() },
			func() error { _, err := mustSlots(t, l, "llm", 2, time.Minute).TryAcquire(ctx, "a"); return err }},
		{"{s:llm}:w", func(k string) error { return rdb.HSet(ctx, k, "f", "v").Err() },
			func() error { _, err := mustSlots(t, l, "llm", 2, time.Minute).Acquire(ctx, "a"); return err }},
	} {
		key := prefix + c.key
		rdb.Del(ctx, key)
		if err := c.set(key); err != nil {
			t.Fatal(err)
		}
		typ := rdb.Type(ctx, key).Val()
		err := c.call()
		if !errors.Is(err, limiter.ErrForeignKey) || limiter.IsUnavailable(err) {
			t.Errorf("%s holding a %s: %v, want ErrForeignKey", c.key, typ, err)
		}
		if got := rdb.Type(ctx, key).Val(); got != typ || rdb.PTTL(ctx, key).Val() != -1 {
			t.Errorf("%s changed: type %s, PTTL %v", c.key, got, rdb.PTTL(ctx, key).Val())
		}
		rdb.Del(ctx, key)
	}
}

// mustBucket builds a Bucket of perSecond and burst, failing the test on
// an error.
func mustBucket(t testing.TB, l *limiter.Limiter, name string, perSecond float64, burst int) *limiter.Bucket {
	t.Helper()
	b, err := l.Bucket(name, limiter.BucketSettings{PerSecond: perSecond, Burst: burst})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
