package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	seq := func(n int) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(i + 1)
		}
		return s
	}
	for _, tc := range []struct {
		n    int
		q    float64
		want time.Duration
	}{
		{1, 0.5, 1},
		{2, 0.5, 1},
		{1_000, 0.50, 500},
		{1_000, 0.99, 990},
		{1_000, 0.999, 999},
		{10_000, 0.999, 9_990}, // the 10th largest of 10,000
		{10_000, 1, 10_000},
		{10_000, 0, 1},
		{0, 0.5, 0},
	} {
		if got := quantile(seq(tc.n), tc.q); got != tc.want {
			t.Errorf("quantile(1..%d, %v) = %d, want %d", tc.n, tc.q, got, tc.want)
		}
	}
}

func TestSummarizeLeavesSamplesAlone(t *testing.T) {
	in := []time.Duration{5, 1, 4, 2, 3}
	s := summarize(in)
	if s.n != 5 || s.p50 != 3 || s.p99 != 5 || s.avg != 3 {
		t.Errorf("summarize = %+v", s)
	}
	if in[0] != 5 || in[1] != 1 {
		t.Errorf("summarize sorted its input: %v", in)
	}
	if (summarize(nil) != latencyStats{}) {
		t.Error("summarize(nil) is not zero")
	}
}

func TestAcceptTimes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		n         int
		span, gap time.Duration
	}{
		{20, 59 * time.Minute, 0},
		{20, 59 * time.Minute, 10 * time.Second},
		{5, time.Second, 20 * time.Millisecond},
		{20, time.Second, 50 * time.Millisecond}, // 19 gaps of 50 ms fill 950 ms of 1 s
		{1, time.Hour, 10 * time.Second},
	} {
		for seed := uint64(0); seed < 50; seed++ {
			ts := acceptTimes(rand.New(rand.NewPCG(seed, 7)), tc.n, now, tc.span, tc.gap)
			if len(ts) != tc.n {
				t.Fatalf("%d times, want %d", len(ts), tc.n)
			}
			for j, x := range ts {
				if !x.After(now.Add(-tc.span)) || x.After(now) {
					t.Errorf("n=%d span=%v: time %d at now%v, outside (now-span, now]", tc.n, tc.span, j, x.Sub(now))
				}
				if j > 0 && x.Sub(ts[j-1]) < tc.gap {
					t.Errorf("n=%d gap=%v: times %d and %d are %v apart", tc.n, tc.gap, j-1, j, x.Sub(ts[j-1]))
				}
			}
		}
	}
	a := acceptTimes(rand.New(rand.NewPCG(1, 2)), 20, now, time.Hour, 0)
	b := acceptTimes(rand.New(rand.NewPCG(1, 2)), 20, now, time.Hour, 0)
	for i := range a {
		if !a[i].Equal(b[i]) {
			t.Fatal("the same seed gave different times")
		}
	}
}

func TestParallel(t *testing.T) {
	var seen [1000]atomic.Int32
	err := parallel(context.Background(), len(seen), 7, func(_ context.Context, i int) error {
		seen[i].Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("item %d ran %d times", i, n)
		}
	}
	boom := errors.New("boom")
	var ran atomic.Int32
	err = parallel(context.Background(), 100_000, 4, func(_ context.Context, i int) error {
		ran.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	if ran.Load() == 100_000 {
		t.Error("parallel went on after an error")
	}
	if err := parallel(context.Background(), 0, 4, func(context.Context, int) error { return boom }); err != nil {
		t.Errorf("no items: err = %v", err)
	}
}

func TestThroughputStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := throughput(context.Background(), 3, time.Minute, [2]uint64{1, 2}, func(context.Context, *rand.Rand) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom (and no minute-long wait)", err)
	}
}

func TestThroughputCounts(t *testing.T) {
	var calls atomic.Int64
	n, took, err := throughput(context.Background(), 4, 20*time.Millisecond, [2]uint64{1, 2}, func(context.Context, *rand.Rand) error {
		calls.Add(1)
		time.Sleep(time.Millisecond)
		return nil
	})
	if err != nil || n != calls.Load() || n == 0 || took < 20*time.Millisecond {
		t.Errorf("throughput = %d calls in %v, %v; %d calls made", n, took, err, calls.Load())
	}
}

func TestTimeEachInterleaves(t *testing.T) {
	var order []string
	op := func(context.Context, *rand.Rand) error { order = append(order, "op"); return nil }
	probe := func(context.Context, *rand.Rand) error { order = append(order, "probe"); return nil }
	ticks := 0
	lat, pl, err := timeEach(context.Background(), 7, 3, nil, func() { ticks++ }, op, probe)
	if err != nil || len(lat) != 7 || len(pl) != 3 || ticks != 7 {
		t.Fatalf("timeEach = %d, %d samples, %d ticks, %v", len(lat), len(pl), ticks, err)
	}
	want := "op probe op op op probe op op op probe"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	if _, pl, _ := timeEach(context.Background(), 3, 0, nil, func() {}, op, nil); pl != nil {
		t.Errorf("every 0 probed %d times", len(pl))
	}
}

func TestPerSecondAndMedian(t *testing.T) {
	for _, tc := range []struct {
		got, want float64
	}{
		{perSecond(time.Millisecond), 1000},
		{perSecond(40 * time.Microsecond), 25_000},
		{perSecond(0), 0},
		{median(nil), 0},
		{median([]float64{3}), 3},
		{median([]float64{9, 1, 5}), 5},
		{median([]float64{1, 100, 2, 3}), 2.5}, // one outlier does not move it
	} {
		if tc.got != tc.want {
			t.Errorf("got %v, want %v", tc.got, tc.want)
		}
	}
}
