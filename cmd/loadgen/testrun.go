package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// testRun is one of the study's tests at one size on its way through the
// phases of runTest.
type testRun struct {
	b     *bench
	test  string
	users int
	cfg   limiter.Config // the main pass's (testConfig)
	label string         // "10,000 users, hourly", for progress lines
	res   TestResult
	// base is used_memory by master once the test's scripts are loaded and
	// its keys gone; replicaBase the replicas' total. The users' figures
	// are growth over them.
	base        map[string]int64
	replicaBase int64
}

// runTest runs one of the study's tests at one size, phase by phase, and
// records each phase's wall time. Workers are closed before every memory
// reading (see target).
func (b *bench) runTest(ctx context.Context, users int, test string) (TestResult, error) {
	began := time.Now()
	r := b.newTestRun(users, test)
	for _, p := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"warm-up", r.takeBaseline},
		{"write", r.writeUsers},
		{"memory", r.measureMemory},
		{"decisions", r.measureDecisions},
		{"purge", r.measurePurge},
		{"expiry", r.measureExpiry},
	} {
		mark := time.Now()
		if err := p.run(ctx); err != nil {
			return r.res, err
		}
		r.res.PhaseSeconds[p.name] = time.Since(mark).Seconds()
	}
	r.res.Acceptance = accept(users, r.res)
	r.res.Seconds = time.Since(began).Seconds()
	return r.res, nil
}

func (b *bench) newTestRun(users int, test string) *testRun {
	cfg := testConfig(test, b.o.prefix)
	r := &testRun{b: b, test: test, users: users, cfg: cfg, label: fmt.Sprintf("%s users, %s", fmtCount(users), test)}
	r.res = TestResult{Test: test, Users: users, Config: describeConfig(cfg), Path: lookupPath(test),
		WrittenWith: "Import (accept times spread over the last hour)", PhaseSeconds: map[string]float64{}}
	if test == testCooldown {
		r.res.WrittenWith = "Allow (first request of each user)"
	}
	return r
}

// withLimiter runs fn with a Limiter of cfg on a worker client of
// --goroutines connections, closed once fn returns.
func (b *bench) withLimiter(cfg limiter.Config, fn func(l *limiter.Limiter, w redis.UniversalClient) error) error {
	return b.t.withWorkers(poolSize(b.o.goroutines), func(w redis.UniversalClient) error {
		l, err := newLimiter(w, cfg)
		if err != nil {
			return err
		}
		return fn(l, w)
	})
}

// takeBaseline loads the test's scripts, deletes its keys and reads the
// memory the users will be measured against.
func (r *testRun) takeBaseline(ctx context.Context) error {
	b := r.b
	err := b.withLimiter(r.cfg, func(l *limiter.Limiter, _ redis.UniversalClient) error { return b.warmUp(ctx, l, r.test) })
	if err != nil {
		return err
	}
	if _, _, err := b.t.purge(ctx, b.o.prefix); err != nil {
		return err
	}
	if r.base, err = b.settledMemory(ctx); err != nil {
		return err
	}
	r.replicaBase, err = b.t.replicaMemory(ctx)
	return err
}

// writeUsers leaves every user's state through the library, timed.
func (r *testRun) writeUsers(ctx context.Context) error {
	return r.b.withLimiter(r.cfg, func(l *limiter.Limiter, _ redis.UniversalClient) error {
		took, err := r.b.populate(ctx, l, r.test, streamPopulate, r.users, r.label+": writing")
		if err != nil {
			return err
		}
		r.res.PopulateSeconds = took.Seconds()
		r.res.PopulatePerSecond = float64(r.users) / took.Seconds()
		return nil
	})
}

// measureMemory reads used_memory once the users are written, compares it
// with MEMORY USAGE of a sample of their keys, and counts the keys on
// each shard.
func (r *testRun) measureMemory(ctx context.Context) error {
	b := r.b
	if b.memory {
		if err := b.settle(ctx); err != nil {
			return err
		}
	}
	// The API buckets' keys live only until the bucket refills (a second
	// or less), so the shared state is written just before the reading.
	if r.test == testFull {
		err := b.t.with(ctx, func(c redis.UniversalClient) error {
			l, err := newLimiter(c, r.cfg)
			if err != nil {
				return err
			}
			r.res.Shared, err = writeSharedState(ctx, l)
			return err
		})
		if err != nil {
			return err
		}
	}
	if b.memory {
		var err error
		if r.res.Memory, err = r.readMemory(ctx); err != nil {
			return err
		}
	}
	return r.countKeys(ctx)
}

// readMemory is the used_memory growth per user, on masters and replicas,
// and MEMORY USAGE of every key a sampled user can have (a missing one
// counts 0), so the figure is per user whatever the test's layout.
func (r *testRun) readMemory(ctx context.Context) (*MemoryResult, error) {
	b := r.b
	after, err := b.t.usedMemoryByNode(ctx)
	if err != nil {
		return nil, err
	}
	m := &MemoryResult{
		BaselineBytes:      sum(r.base),
		AfterBytes:         sum(after),
		StudyEstimateBytes: studyEstimate(r.test, r.users),
		after:              after,
	}
	m.DeltaBytes = m.AfterBytes - m.BaselineBytes
	m.BytesPerUser = float64(m.DeltaBytes) / float64(r.users)
	if n := b.t.replicas; n > 0 {
		after, err := b.t.replicaMemory(ctx)
		if err != nil {
			return nil, err
		}
		m.ReplicaDeltaBytes = after - r.replicaBase
		m.ReplicaBytesPerUser = float64(m.ReplicaDeltaBytes) / float64(r.users*n)
	}
	rng := b.rngFor(r.test, streamSample, 0)
	sample := min(memorySample, r.users)
	var keys []string
	for range sample {
		keys = append(keys, b.userKeys(userName(rng.IntN(r.users)))...)
	}
	sizes, ok, err := b.t.memoryUsage(ctx, keys)
	if err != nil {
		return nil, err
	}
	if ok {
		var total int64
		for _, n := range sizes {
			total += n
		}
		m.SampleKeys = sample
		m.MemoryUsagePerUser = float64(total) / float64(sample)
		m.NotInMemoryUsagePerUser = m.BytesPerUser - m.MemoryUsagePerUser
	}
	_ = b.t.with(ctx, func(c redis.UniversalClient) error {
		for _, k := range keys {
			if m.Encoding, _ = c.ObjectEncoding(ctx, k).Result(); m.Encoding != "" {
				break
			}
		}
		return nil
	})
	return m, nil
}

// countKeys counts the keys on each shard: one per user, plus the full
// test's shared state. Anything else would be a layout change the memory
// figures should not hide.
func (r *testRun) countKeys(ctx context.Context) error {
	keys, err := r.b.t.countKeysByNode(ctx, r.b.o.prefix)
	if err != nil {
		return err
	}
	res := &r.res
	res.Keys = sum(keys)
	res.Shared.Keys = int(res.Keys) - r.users
	for _, node := range r.b.shards.nodes {
		sh := ShardResult{Node: node, Keys: keys[node]}
		if res.Memory != nil {
			sh.DeltaBytes = res.Memory.after[node] - r.base[node]
			if sh.Keys > 0 {
				sh.BytesPerUser = float64(sh.DeltaBytes) / float64(sh.Keys)
			}
		}
		res.Shards = append(res.Shards, sh)
	}
	res.Spread = spread(res.Shards)
	return nil
}

// measureDecisions times decisions on a real Redis: one at a time, then at
// N goroutines with the server time they cost, the full test's hot keys,
// and the lookups again with the deny cache on.
func (r *testRun) measureDecisions(ctx context.Context) error {
	if !r.b.timed() {
		return nil
	}
	return r.b.withLimiter(r.cfg, func(l *limiter.Limiter, w redis.UniversalClient) error {
		res := &r.res
		var err error
		if res.Latency, err = r.measureLatency(ctx, l, w); err != nil {
			return err
		}
		meter := newServerMeter(r.b.shards)
		if err := r.measureThroughput(ctx, l, w, meter); err != nil {
			return err
		}
		var per []ServerTime
		per, res.Server = meter.result()
		for i := range res.Shards {
			res.Shards[i].ServerTime = per[i]
		}
		if r.test == testFull {
			if res.HotKeys, err = r.b.measureHotKeys(ctx, w, r.cfg); err != nil {
				return err
			}
		}
		return r.measureCached(ctx, w)
	})
}

// lookupCount counts what the decisions of a phase were.
type lookupCount struct{ allowed, cached int }

// lookupOp is one decision on a random existing user; meter, if not nil,
// counts it on the user's shard.
func lookupOp(l *limiter.Limiter, users int, n *lookupCount, meter *serverMeter) func(ctx context.Context, rng *rand.Rand) error {
	return func(ctx context.Context, rng *rand.Rand) error {
		user := userName(rng.IntN(users))
		if meter != nil {
			if err := meter.count(l, user); err != nil {
				return err
			}
		}
		d, err := l.Allow(ctx, user)
		switch {
		case err != nil:
			return err
		case d.Degraded:
			return errDegraded(l.Config())
		case n != nil && d.Allowed:
			n.allowed++
		case n != nil && d.Cached:
			n.cached++
		}
		return nil
	}
}

// pingEvery: the lookups are interleaved with one PING per pingEvery
// decisions, the round trip they are compared with.
const pingEvery = 5

// measureLatency times --lookups decisions one after another, with a PING
// timed after every pingEvery-th, and fills the 1-goroutine throughput
// figures.
func (r *testRun) measureLatency(ctx context.Context, l *limiter.Limiter, w redis.UniversalClient) (LatencyResult, error) {
	b, th := r.b, &r.res.Throughput
	bar := b.progress.start(r.label+": lookups", b.o.lookups)
	defer bar.done()
	var n lookupCount
	ping := func(ctx context.Context, _ *rand.Rand) error { return w.Ping(ctx).Err() }
	lat, pl, err := timeEach(ctx, b.o.lookups, pingEvery, b.rngFor(r.test, streamLookups, 0), func() { bar.add(1) }, lookupOp(l, r.users, &n, nil), ping)
	if err != nil {
		return LatencyResult{}, err
	}
	s := summarize(lat)
	ps := summarize(pl)
	th.PingSamples = len(pl)
	th.PingP50us = us(ps.p50)
	// Medians: a stall from elsewhere on the machine moves a mean by more
	// than the difference being measured.
	th.Decisions1PerSec, th.Ping1PerSec = perSecond(s.p50), perSecond(ps.p50)
	th.Ratio1 = th.Decisions1PerSec / th.Ping1PerSec
	return LatencyResult{
		Lookups:         s.n,
		P50us:           us(s.p50),
		P99us:           us(s.p99),
		P999us:          us(s.p999),
		MeanUs:          us(s.avg),
		AllowedFraction: float64(n.allowed) / float64(s.n),
		PerSecond:       th.Decisions1PerSec,
	}, nil
}

// measureCached replays the same lookups through a Limiter with the local
// deny cache on (the library's default size): a user denied once is then
// answered in-process until the RetryAfter Redis gave.
func (r *testRun) measureCached(ctx context.Context, w redis.UniversalClient) error {
	b, lr := r.b, &r.res.Latency
	cfg := r.cfg
	cfg.LocalCacheSize = limiter.DefaultConfig().LocalCacheSize
	l, err := newLimiter(w, cfg)
	if err != nil {
		return err
	}
	bar := b.progress.start(r.label+": lookups, deny cache on", b.o.lookups)
	defer bar.done()
	var n lookupCount
	lat, _, err := timeEach(ctx, b.o.lookups, 0, b.rngFor(r.test, streamLookups, 0), func() { bar.add(1) }, lookupOp(l, r.users, &n, nil), nil)
	if err != nil {
		return err
	}
	s := summarize(lat)
	lr.CachedP50us, lr.CachedP99us = us(s.p50), us(s.p99)
	lr.CachedFraction = float64(n.cached) / float64(s.n)
	lr.CacheSize = cfg.LocalCacheSize
	return nil
}

// throughputRounds: the N-goroutine phase alternates decisions and PING
// this many times.
const throughputRounds = 6

// measureThroughput compares decisions with PING at N goroutines, for
// --duration each, in alternating slices (the 1-goroutine figures come
// from measureLatency). meter brackets the decision slices only, so
// PING's cost stays out of the server time per decision.
func (r *testRun) measureThroughput(ctx context.Context, l *limiter.Limiter, w redis.UniversalClient, meter *serverMeter) error {
	b, th := r.b, &r.res.Throughput
	g := b.o.goroutines
	th.Goroutines = g
	ping := func(ctx context.Context, _ *rand.Rand) error { return w.Ping(ctx).Err() }
	// Open the N connections first, so no dial lands in the timed phases.
	if err := parallel(ctx, g, g, func(ctx context.Context, _ int) error { return w.Ping(ctx).Err() }); err != nil {
		return fmt.Errorf("loadgen: PING: %w", err)
	}
	bar := b.progress.startTimed(fmt.Sprintf("%s: %d goroutines", r.label, g), 2*b.o.duration)
	defer bar.done()
	// Decisions and PING take turns in short slices, and the medians over
	// the slices are kept: a burst of noise from elsewhere on the machine
	// spoils a slice or two, not the figure.
	slice := b.o.duration / throughputRounds
	var dr, pr, ratios []float64
	for i := uint64(0); i < throughputRounds; i++ {
		seed := [2]uint64{b.o.seed, testIndex(r.test)<<56 | streamThroughput<<48 | i<<32}
		if err := meter.begin(ctx, w); err != nil {
			return fmt.Errorf("loadgen: INFO commandstats: %w", err)
		}
		n, took, err := throughput(ctx, g, slice, seed, lookupOp(l, r.users, nil, meter))
		if err != nil {
			return err
		}
		if err := meter.end(ctx, w); err != nil {
			return fmt.Errorf("loadgen: INFO commandstats: %w", err)
		}
		d := float64(n) / took.Seconds()
		if n, took, err = throughput(ctx, g, slice, seed, ping); err != nil {
			return fmt.Errorf("loadgen: PING: %w", err)
		}
		p := float64(n) / took.Seconds()
		dr, pr, ratios = append(dr, d), append(pr, p), append(ratios, d/p)
	}
	th.DecisionsNPerSec, th.PingNPerSec, th.RatioN = median(dr), median(pr), median(ratios)
	return nil
}

// measurePurge deletes the test's keys with SCAN MATCH + UNLINK, timed.
func (r *testRun) measurePurge(ctx context.Context) error {
	b := r.b
	n, took, err := b.t.purge(ctx, b.o.prefix)
	if err != nil {
		return err
	}
	p := &r.res.Purge
	*p = PurgeResult{Ms: ms(took), Keys: n, KeysPerSecond: float64(n) / took.Seconds()}
	if b.memory {
		after, err := b.settledMemory(ctx)
		if err != nil {
			return err
		}
		above := sum(after) - sum(r.base)
		p.MemoryAboveBaselineBytes = &above
	}
	return nil
}

// measureExpiry writes the users again with every TTL at most --idle,
// waits until the last key is due and times how long Redis takes to
// delete them all (INFO stats expired_keys) and to give the memory back
// (used_memory within tolerance of the baseline taken before the pass).
func (r *testRun) measureExpiry(ctx context.Context) error {
	b := r.b
	if !b.memory {
		return nil
	}
	cfg := expiryConfig(r.test, b.o.prefix, b.o.idle)
	base, _, err := b.t.usedMemory(ctx)
	if err != nil {
		return err
	}
	exp0, ok, err := b.t.expiredKeys(ctx)
	if err != nil || !ok {
		return err
	}
	e := &ExpiryResult{Config: describeConfig(cfg), IdleSeconds: b.o.idle.Seconds(), Keys: int64(r.users)}
	var due time.Time
	err = b.withLimiter(cfg, func(l *limiter.Limiter, _ redis.UniversalClient) error {
		took, err := b.populate(ctx, l, r.test, streamExpiry, r.users, r.label+": writing the idle batch")
		// Every TTL was set during the populate, each at most idle long.
		due = time.Now().Add(b.o.idle)
		e.WriteSeconds = took.Seconds()
		return err
	})
	if err != nil {
		return err
	}
	peak, _, err := b.t.usedMemory(ctx)
	if err != nil {
		return err
	}
	e.PeakAboveBaselineBytes = peak - base
	// "Back near the baseline": within 5% of what the batch added, at
	// least 16 kB (allocator noise).
	e.ToleranceBytes = max(e.PeakAboveBaselineBytes/20, 16_000)

	bar := b.progress.startTimed(r.label+": idle", time.Until(due))
	err = sleep(ctx, time.Until(due))
	bar.done()
	if err != nil {
		return err
	}
	timeout := expiryTimeout(r.users)
	bar = b.progress.startTimed(r.label+": waiting for Redis to expire the keys (at most "+timeout.String()+")", timeout)
	defer bar.done()
	var keysAt, memAt time.Duration
	var mem int64
	// One connection polls, so the readings' own cost stays constant.
	err = b.t.with(ctx, func(c redis.UniversalClient) error {
		if err := b.t.quiesce(ctx, c); err != nil {
			return err
		}
		start := time.Now()
		for {
			exp, _, err := infoInt(ctx, c, "stats", "expired_keys")
			if err != nil {
				return err
			}
			if mem, _, err = infoInt(ctx, c, "memory", "used_memory"); err != nil {
				return err
			}
			now := max(time.Since(start), time.Microsecond)
			e.ExpiredKeys = exp - exp0
			if keysAt == 0 && e.ExpiredKeys >= e.Keys {
				keysAt = now
			}
			// Memory cannot be back before the keys are gone; before that,
			// a reading within tolerance is noise.
			if keysAt != 0 && mem-base <= e.ToleranceBytes {
				memAt = now
				return nil
			}
			if now > timeout {
				e.TimedOut = true
				return nil
			}
			if err := sleep(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
	})
	if err != nil {
		return err
	}
	e.KeysReclaimedMs, e.MemoryReclaimedMs = msOrNil(keysAt), msOrNil(memAt)
	e.MemoryAboveBaselineBytes = mem - base
	// Whatever is left (only after a timeout) goes the explicit way.
	if e.KeysLeft, _, err = b.t.purge(ctx, b.o.prefix); err != nil {
		return err
	}
	r.res.Expiry = e
	return nil
}
