package limiter

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// bucketStep is AllowN(n) at an instant (from epoch) and the exact decision.
type bucketStep struct {
	at   time.Duration
	n    int
	want Decision
}

func runBucketSteps(t *testing.T, b *Bucket, r *testRedis, steps []bucketStep) {
	t.Helper()
	for i, s := range steps {
		r.at(s.at)
		got, err := b.AllowN(context.Background(), s.n)
		if err != nil {
			t.Fatalf("step %d at %v: AllowN(%d): %v", i, s.at, s.n, err)
		}
		if got != s.want {
			t.Fatalf("step %d at %v, n=%d:\n got %+v\nwant %+v", i, s.at, s.n, got, s.want)
		}
	}
}

func rateOK(remaining int, reset time.Duration) Decision {
	return Decision{Allowed: true, Remaining: remaining, ResetAfter: reset}
}

func rateDenied(remaining int, retry, reset time.Duration) Decision {
	return Decision{Reason: ReasonRate, Remaining: remaining, RetryAfter: retry, ResetAfter: reset}
}

// mustBucket builds a Bucket of perSecond and burst, failing the test on
// an error.
func mustBucket(t testing.TB, l *Limiter, name string, perSecond float64, burst int) *Bucket {
	t.Helper()
	b, err := l.Bucket(name, BucketSettings{PerSecond: perSecond, Burst: burst})
	return must(t, b, err, "Bucket(%q)", name)
}

func bucketConfig() Config {
	cfg := DefaultConfig()
	cfg.LocalCacheSize = 0
	return cfg
}

const (
	msec = time.Millisecond
	usec = time.Microsecond
)

// IGDB's 4 req/s with no burst: exact spacing of 250 ms, to the µs.
func TestBucketSpacingBurst1(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	runBucketSteps(t, mustBucket(t, l, "igdb", 4, 1), r, []bucketStep{
		{0, 1, rateOK(0, 250*msec)},
		{100 * msec, 1, rateDenied(0, 150*msec, 150*msec)},
		{250*msec - usec, 1, rateDenied(0, msec, usec)}, // 1 µs to go: RetryAfter is at least 1 ms
		{250 * msec, 1, rateOK(0, 250*msec)},
		{250 * msec, 1, rateDenied(0, 250*msec, 250*msec)},
		{500 * msec, 1, rateOK(0, 250*msec)},
		// A quiet spell refills only up to the burst: one call, not more.
		{10 * time.Second, 1, rateOK(0, 250*msec)},
		{10*time.Second + 1*msec, 1, rateDenied(0, 249*msec, 249*msec)},
	})
}

// A burst of 3 at 4/s: three at once, then one every 250 ms; Remaining,
// RetryAfter and ResetAfter exact; AllowN takes several tokens at once.
func TestBucketBurstThenSpacing(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	runBucketSteps(t, mustBucket(t, l, "igdb", 4, 3), r, []bucketStep{
		{0, 1, rateOK(2, 250*msec)},
		{0, 1, rateOK(1, 500*msec)},
		{0, 1, rateOK(0, 750*msec)},
		{0, 1, rateDenied(0, 250*msec, 750*msec)},
		{100 * msec, 1, rateDenied(0, 150*msec, 650*msec)},
		{250 * msec, 1, rateOK(0, 750*msec)},
		{400 * msec, 1, rateDenied(0, 100*msec, 600*msec)},
		// Full again at 1000 ms (TAT), one token used.
		{1000 * msec, 1, rateOK(2, 250*msec)},
		// Three at once need the whole burst: 250 ms more.
		{1000 * msec, 3, rateDenied(2, 250*msec, 250*msec)},
		{1250 * msec, 3, rateOK(0, 750*msec)},
		{1500 * msec, 2, rateDenied(1, 250*msec, 500*msec)},
		{1750 * msec, 2, rateOK(0, 750*msec)},
	})
}

// A rate that does not divide a second: the interval rounds up to whole
// µs (333334 µs at 3/s), so the rate is never exceeded.
func TestBucketIntervalRoundsUp(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	runBucketSteps(t, mustBucket(t, l, "three", 3, 1), r, []bucketStep{
		{0, 1, rateOK(0, 333334*usec)},
		{333333 * usec, 1, rateDenied(0, msec, usec)}, // at least 1 ms
		{333334 * usec, 1, rateOK(0, 333334*usec)},
	})
}

// Zero settings take the API's entry in Config.APIRates; a rate without a
// burst is a burst of 1; a burst alone keeps the configured rate.
func TestBucketSettingsDefaults(t *testing.T) {
	cfg := bucketConfig()
	cfg.APIRates["igdb"] = APIRate{PerSecond: 4, Burst: 3}
	l, r := newTestLimiter(t, cfg)
	wiki, err := l.Bucket("wikipedia", BucketSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if ps, burst := wiki.Limit(); ps != 1 || burst != 1 || wiki.Name() != "wikipedia" {
		t.Fatalf("wikipedia bucket = %s %g/%d, want 1/1", wiki.Name(), ps, burst)
	}
	runBucketSteps(t, wiki, r, []bucketStep{
		{0, 1, rateOK(0, time.Second)},
		{999 * msec, 1, rateDenied(0, msec, msec)},
	})
	igdb, err := l.Bucket("igdb", BucketSettings{})
	if err != nil {
		t.Fatal(err)
	}
	// Separate APIs, separate keys: IGDB is untouched by Wikipedia's use.
	runBucketSteps(t, igdb, r, []bucketStep{{999 * msec, 1, rateOK(2, 250*msec)}})

	for _, c := range []struct {
		name      string
		s         BucketSettings
		perSecond float64
		burst     int
	}{
		{"igdb", BucketSettings{}, 4, 3},
		{"igdb", BucketSettings{Burst: 5}, 4, 5},
		{"igdb", BucketSettings{PerSecond: 10}, 10, 1},
		{"reddit", BucketSettings{PerSecond: 2}, 2, 1},
		{"reddit", BucketSettings{PerSecond: 2, Burst: 4}, 2, 4},
	} {
		b, err := l.Bucket(c.name, c.s)
		if err != nil {
			t.Fatalf("Bucket(%q, %+v): %v", c.name, c.s, err)
		}
		if ps, burst := b.Limit(); ps != c.perSecond || burst != c.burst {
			t.Errorf("Bucket(%q, %+v).Limit() = %g/%d, want %g/%d", c.name, c.s, ps, burst, c.perSecond, c.burst)
		}
	}

	for _, s := range []BucketSettings{{}, {Burst: 2}} {
		b, err := l.Bucket("reddit", s)
		if b != nil || !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), `"reddit"`) ||
			!strings.Contains(err.Error(), "igdb, wikipedia") {
			t.Fatalf("Bucket(reddit, %+v) = %v, %v; want ErrInvalidName naming reddit and the configured APIs", s, b, err)
		}
	}
}

// The key holds the TAT as an integer of µs and lives exactly until the
// bucket is full again; then it is gone.
func TestBucketKeyTTL(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	b := mustBucket(t, l, "igdb", 4, 3)
	ctx := context.Background()
	for range 2 {
		if d, err := b.Allow(ctx); err != nil || !d.Allowed {
			t.Fatalf("Allow = %+v, %v", d, err)
		}
	}
	key := "floodgate:{api:igdb}:t"
	if got := r.mr.TTL(key); got != 500*msec {
		t.Fatalf("TTL = %v, want 500ms", got)
	}
	if got, want := mustGet(t, r, key), "1795694400500000"; got != want {
		t.Fatalf("TAT = %q, want %q (epoch + 500 ms in µs)", got, want)
	}
	// A denied request writes nothing.
	r.at(0)
	b.AllowN(ctx, 2)
	if got := r.mr.TTL(key); got != 500*msec {
		t.Fatalf("TTL after a denial = %v, want 500ms", got)
	}
	r.at(500 * msec)
	if r.mr.Exists(key) {
		t.Fatalf("%s still exists once the bucket is full", key)
	}
	// A TTL that is not a whole ms rounds up: the key never dies early.
	r.at(500*msec + 100*usec)
	if d, _ := mustBucket(t, l, "fast", 1000, 1).Allow(ctx); !d.Allowed || d.ResetAfter != msec {
		t.Fatalf("fast Allow = %+v", d)
	}
	mustBucket(t, l, "odd", 3, 1).Allow(ctx)
	if got := r.mr.TTL("floodgate:{api:odd}:t"); got != 334*msec {
		t.Fatalf("TTL of a 333334 µs interval = %v, want 334ms", got)
	}
}

func mustGet(t *testing.T, r *testRedis, key string) string {
	t.Helper()
	v, err := r.mr.Get(key)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

// The Lua script and the in-process fallback are the same algorithm:
// random calls at random instants get identical decisions.
func TestBucketLuaMatchesLocalGCRA(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		perSecond float64
		burst     int
	}{{4, 1}, {1, 1}, {4, 4}, {3, 5}, {1000, 20}, {0.5, 2}} {
		b := mustBucket(t, l, "cmp", c.perSecond, c.burst)
		r.mr.FlushAll()
		start := r.now.Sub(epoch)
		var tat int64
		elapsed := time.Duration(0)
		for i := range 300 {
			elapsed += time.Duration(rng.Int64N(3*b.interval)) * usec
			r.at(start + elapsed)
			n := 1 + rng.IntN(c.burst)
			got, err := b.AllowN(context.Background(), n)
			if err != nil {
				t.Fatal(err)
			}
			var want Decision
			want, tat = gcraStep(elapsed.Microseconds(), tat, b.interval, c.burst, n)
			if got != want {
				t.Fatalf("%g/%d call %d (n=%d at +%v): Lua %+v, Go %+v", c.perSecond, c.burst, i, n, elapsed, got, want)
			}
		}
	}
}

// A key that is not ours is ErrForeignKey, as from every policy: never
// an outage, never a silent reset, and the key is left as it was.
func TestBucketForeignKey(t *testing.T) {
	l, r := newTestLimiter(t, bucketConfig())
	const key = "floodgate:{api:igdb}:t"
	b := mustBucket(t, l, "igdb", 4, 1)
	for _, v := range []string{"hello", "1.5", "-3", "1e300", ""} {
		r.mr.Set(key, v)
		d, err := b.Allow(context.Background())
		if !errors.Is(err, ErrForeignKey) || IsUnavailable(err) || d != (Decision{}) ||
			!strings.HasPrefix(err.Error(), "limiter: ") || !strings.Contains(err.Error(), `"igdb"`) {
			t.Fatalf("Allow on a key holding %q = %+v, %v; want ErrForeignKey naming the API", v, d, err)
		}
		if got, _ := r.mr.Get(key); got != v || r.mr.TTL(key) != 0 {
			t.Fatalf("the foreign key changed to %q (TTL %v)", got, r.mr.TTL(key))
		}
	}
	r.mr.Del(key)
	r.mr.Lpush(key, "x")
	if _, err := b.Allow(context.Background()); !errors.Is(err, ErrForeignKey) || IsUnavailable(err) {
		t.Fatalf("Allow on a list key = %v, want ErrForeignKey", err)
	}
	// Under FailOpen too: a foreign key is not an outage.
	cfg := bucketConfig()
	cfg.BucketOnRedisError = FailOpen
	l2, err := New(r.rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := mustBucket(t, l2, "igdb", 4, 1).Allow(context.Background()); !errors.Is(err, ErrForeignKey) || d.Allowed {
		t.Fatalf("FailOpen Allow on a list key = %+v, %v; want ErrForeignKey", d, err)
	}
	// A whole number is taken as a TAT: ours, or at worst a past one.
	r.mr.Del(key)
	r.mr.Set(key, "5")
	if d, err := b.Allow(context.Background()); err != nil || !d.Allowed {
		t.Fatalf("Allow over a past TAT = %+v, %v", d, err)
	}
}

// downLimiter returns a Limiter whose Redis is closed.
func downLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	mr.Close()
	l, err := New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestBucketRedisDown(t *testing.T) {
	ctx := context.Background()

	cfg := bucketConfig()
	obs := &recordObserver{}
	cfg.Observer = obs
	l := downLimiter(t, cfg)
	// FailLocal: the same GCRA in-process, shared by Buckets of one name.
	// A slow rate keeps real time out of the way.
	for i, want := range []bool{true, true, false} {
		d, err := mustBucket(t, l, "igdb", 0.01, 2).Allow(ctx)
		if err != nil || d.Allowed != want || !d.Degraded {
			t.Fatalf("FailLocal call %d = %+v, %v; want Allowed=%v, Degraded", i, d, err, want)
		}
		if !want && (d.Reason != ReasonRate || d.RetryAfter <= 99*time.Second || d.RetryAfter > 100*time.Second) {
			t.Fatalf("FailLocal denial = %+v, want ReasonRate, RetryAfter ~100s", d)
		}
	}
	if len(obs.decisions) != 3 || !obs.decisions[2].Degraded {
		t.Fatalf("observer saw %+v", obs.decisions)
	}
	// Another API has its own local state.
	if d, _ := mustBucket(t, l, "wikipedia", 0.01, 1).Allow(ctx); !d.Allowed || !d.Degraded {
		t.Fatalf("other API under FailLocal = %+v", d)
	}

	cfg.BucketOnRedisError = FailOpen
	l = downLimiter(t, cfg)
	for range 3 {
		if d, err := mustBucket(t, l, "igdb", 0.01, 1).Allow(ctx); err != nil || d != (Decision{Allowed: true, Remaining: Unlimited, Degraded: true}) {
			t.Fatalf("FailOpen = %+v, %v", d, err)
		}
	}

	cfg.BucketOnRedisError = FailClosed
	l = downLimiter(t, cfg)
	d, err := mustBucket(t, l, "igdb", 4, 1).Allow(ctx)
	if err != nil || d != (Decision{Reason: ReasonRedisDown, RetryAfter: redisRetryInterval, ResetAfter: redisRetryInterval, Degraded: true}) {
		t.Fatalf("FailClosed = %+v, %v", d, err)
	}
	// Wait keeps trying while closed, until its context ends.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := mustBucket(t, l, "igdb", 4, 1).Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait while failing closed = %v, want DeadlineExceeded", err)
	}

	// A caller's own cancelled context is its error, not an outage.
	cfg.BucketOnRedisError = FailOpen
	l = downLimiter(t, cfg)
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := mustBucket(t, l, "igdb", 4, 1).Allow(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Allow with a cancelled context = %v", err)
	}
}

// realTimeLimiter runs on a miniredis whose clock is the wall clock, for
// Wait, which sleeps in real time.
func realTimeLimiter(t *testing.T, cfg Config) (*Limiter, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	l, err := New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, mr
}

// Wait sleeps RetryAfter on a timer instead of polling: each call takes
// one denial and one grant, whatever the machine's speed.
func TestBucketWaitSleepsRetryAfter(t *testing.T) {
	cfg := bucketConfig()
	obs := &recordObserver{}
	cfg.Observer = obs
	l, _ := realTimeLimiter(t, cfg)
	b := mustBucket(t, l, "api", 50, 1) // 20 ms apart
	ctx := context.Background()
	const calls = 5
	for range calls {
		if _, err := b.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The first call passes at once; each later one is denied at most a
	// few times (a denial only repeats if the timer fired before Redis's
	// clock reached the TAT), never spun on.
	if n := obs.roundTrips(); n > 1+4*(calls-1) {
		t.Fatalf("%d Waits made %d round trips: Wait polls instead of sleeping", calls, n)
	}
	// WaitN with several tokens.
	if _, err := mustBucket(t, l, "api2", 50, 3).WaitN(ctx, 3); err != nil {
		t.Fatal(err)
	}
}

func TestBucketWaitContext(t *testing.T) {
	l, _ := realTimeLimiter(t, bucketConfig())
	b := mustBucket(t, l, "wiki", 0.01, 1) // one call per 100 s
	ctx := context.Background()
	if d, err := b.Wait(ctx); err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	// A deadline before the next token: an error at once, not a sleep,
	// with the denial that says when (about 100 s).
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if d, err := b.Wait(dctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deadline") ||
		d.Allowed || d.Reason != ReasonRate || d.RetryAfter < 90*time.Second {
		t.Fatalf("Wait past the deadline = %+v, %v", d, err)
	}
	// Cancellation ends a wait.
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := b.Wait(cctx); done <- err }()
	ccancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait = %v", err)
	}
}
