package limiter

import (
	"math"
	"testing"
	"time"
)

func TestBackoffSettings(t *testing.T) {
	cfg := backoffConfig()
	cfg.LLMBackoffJitter = 0.2
	l, r := newTestLimiter(t, cfg)

	// Zero fields take the Config's values.
	b, err := l.Backoff("llm", BackoffSettings{})
	if err != nil {
		t.Fatal(err)
	}
	s := b.set
	if s.RetryDelay != 5*bsec || s.Multiplier != 2 || s.Max != 300*bsec || s.Jitter != 0.2 || s.ProbeLease != 30*bsec || s.IsFailure == nil {
		t.Fatalf("defaults: %+v", s)
	}

	// Given fields win; a negative Jitter turns it off.
	b, err = l.Backoff("tts", BackoffSettings{RetryDelay: bsec, Multiplier: 3, Max: 9 * bsec, Jitter: -1, ProbeLease: 2 * bsec})
	if err != nil {
		t.Fatal(err)
	}
	b.token = func() string { return testToken }
	runBackoff(t, b, r, epLocal, []bstep{
		{0, 'f', bOpen(bsec)},
		{bsec, 'c', bProbe(2 * bsec)},
		{bsec, 'f', bOpen(3 * bsec)},
		{4 * bsec, 'c', bProbe(2 * bsec)},
		{4 * bsec, 'f', bOpen(9 * bsec)},
		{13 * bsec, 'c', bProbe(2 * bsec)},
		{15 * bsec, 'c', bProbe(2 * bsec)}, // the lease ran out
		{15 * bsec, 'f', bOpen(9 * bsec)},
	})

	for _, tc := range []struct {
		s     BackoffSettings
		field string
	}{
		{BackoffSettings{RetryDelay: -1}, "RetryDelay"},
		{BackoffSettings{RetryDelay: 25 * time.Hour, Max: 26 * time.Hour}, "RetryDelay"},
		{BackoffSettings{Multiplier: 0.5}, "Multiplier"},
		{BackoffSettings{Multiplier: math.NaN()}, "Multiplier"},
		{BackoffSettings{Multiplier: 101}, "Multiplier"},
		{BackoffSettings{Max: time.Second}, "Max"}, // below the default 5 s RetryDelay
		{BackoffSettings{Max: -time.Second}, "Max"},
		{BackoffSettings{Jitter: 1.5}, "Jitter"},
		{BackoffSettings{Jitter: math.NaN()}, "Jitter"},
		{BackoffSettings{ProbeLease: -1}, "ProbeLease"},
		{BackoffSettings{ProbeLease: 25 * time.Hour}, "ProbeLease"},
	} {
		b, err := l.Backoff("llm", tc.s)
		if b != nil || !refused(err, ErrInvalidArgument, "BackoffSettings."+tc.field+" ") {
			t.Errorf("Backoff(%+v) = %v, %v; want ErrInvalidArgument naming %s", tc.s, b, err, tc.field)
		}
	}
}
