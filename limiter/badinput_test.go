package limiter

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadInputAtEveryEntryPoint feeds each public method bad input and
// checks the error names the problem (errors.Is on the sentinel) and that
// not one command reached Redis: nothing is half-written.
func TestBadInputAtEveryEntryPoint(t *testing.T) {
	l, r := newTestLimiter(t, DefaultConfig())
	ctx := context.Background()
	long := strings.Repeat("x", MaxUserLen+1)
	longName := strings.Repeat("n", MaxNameLen+1)
	api := mustBucket(t, l, "api", 1, 2)
	llm := mustSlots(t, l, "llm", 7, time.Second)
	var nilLimiter *Limiter
	before := r.mr.CommandCount()
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"Allow empty", func() error { _, err := l.Allow(ctx, ""); return err }, ErrInvalidUser},
		{"Allow oversized", func() error { _, err := l.Allow(ctx, long); return err }, ErrInvalidUser},
		{"Wait empty", func() error { _, err := l.Wait(ctx, ""); return err }, ErrInvalidUser},
		{"AllowMany one empty", func() error { _, err := l.AllowMany(ctx, []string{"a", ""}); return err }, ErrInvalidUser},
		{"AllowMany oversized", func() error { _, err := l.AllowMany(ctx, []string{long}); return err }, ErrInvalidUser},
		{"Reset empty", func() error { return l.Reset(ctx, "") }, ErrInvalidUser},
		{"Import oversized", func() error { return l.Import(ctx, long, []time.Time{time.Now()}) }, ErrInvalidUser},
		{"Backoff empty name", func() error { _, err := l.Backoff("", BackoffSettings{}); return err }, ErrInvalidName},
		{"Backoff name with braces", func() error { _, err := l.Backoff("a{b}", BackoffSettings{}); return err }, ErrInvalidName},
		{"Backoff bad settings", func() error { _, err := l.Backoff("llm", BackoffSettings{Multiplier: 0.5}); return err }, ErrInvalidArgument},
		{"Backoff empty endpoint", func() error { _, err := mustBackoff(t, l, "llm").Failure(ctx, ""); return err }, ErrInvalidName},
		{"Backoff oversized endpoint", func() error { return mustBackoff(t, l, "llm").Success(ctx, longName) }, ErrInvalidName},
		{"Backoff non-UTF-8 endpoint", func() error { _, err := mustBackoff(t, l, "llm").Check(ctx, "\xff"); return err }, ErrInvalidName},
		{"Pick none", func() error { _, _, err := mustBackoff(t, l, "llm").Pick(ctx); return err }, ErrInvalidArgument},
		{"Pick one bad", func() error { _, _, err := mustBackoff(t, l, "llm").Pick(ctx, "ok", ""); return err }, ErrInvalidName},
		{"Bucket NaN rate", func() error { _, err := l.Bucket("api", BucketSettings{PerSecond: math.NaN()}); return err }, ErrInvalidArgument},
		{"Bucket negative rate", func() error { _, err := l.Bucket("api", BucketSettings{PerSecond: -1}); return err }, ErrInvalidArgument},
		{"Bucket infinite rate", func() error { _, err := l.Bucket("api", BucketSettings{PerSecond: math.Inf(1)}); return err }, ErrInvalidArgument},
		{"Bucket negative burst", func() error { _, err := l.Bucket("api", BucketSettings{PerSecond: 1, Burst: -1}); return err }, ErrInvalidArgument},
		{"Bucket huge burst", func() error { _, err := l.Bucket("api", BucketSettings{PerSecond: 1, Burst: math.MaxInt}); return err }, ErrInvalidArgument},
		{"Bucket empty name", func() error { _, err := l.Bucket("", BucketSettings{PerSecond: 1}); return err }, ErrInvalidName},
		{"Bucket AllowN over burst", func() error { _, err := api.AllowN(ctx, 3); return err }, ErrInvalidArgument},
		{"Bucket AllowN zero", func() error { _, err := api.AllowN(ctx, 0); return err }, ErrInvalidArgument},
		{"Bucket unlisted", func() error { _, err := l.Bucket("nope", BucketSettings{}); return err }, ErrInvalidName},
		{"Slots negative size", func() error { _, err := l.Slots("llm", SlotsSettings{Size: -1}); return err }, ErrInvalidArgument},
		{"Slots negative lease", func() error { _, err := l.Slots("llm", SlotsSettings{Lease: -time.Second}); return err }, ErrInvalidArgument},
		{"Slots empty holder", func() error { _, err := llm.TryAcquire(ctx, ""); return err }, ErrInvalidUser},
		{"Slots oversized holder", func() error { _, err := llm.Acquire(ctx, long); return err }, ErrInvalidUser},
		{"Slots empty name", func() error { _, err := l.Slots("", SlotsSettings{}); return err }, ErrInvalidName},
		{"Backoff on a nil Limiter", func() error { _, err := nilLimiter.Backoff("llm", BackoffSettings{}); return err }, ErrInvalidArgument},
		{"Bucket on a nil Limiter", func() error { _, err := nilLimiter.Bucket("igdb", BucketSettings{}); return err }, ErrInvalidArgument},
		{"Budget on a nil Limiter", func() error { _, err := nilLimiter.Budget("llm", BudgetSettings{}); return err }, ErrInvalidArgument},
		{"Slots on a nil Limiter", func() error { _, err := nilLimiter.Slots("llm", SlotsSettings{}); return err }, ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "limiter: ") {
				t.Fatalf("error %q does not start with the package name", err)
			}
		})
	}
	if n := r.mr.CommandCount() - before; n != 0 {
		t.Fatalf("bad input sent %d commands to Redis", n)
	}
	if keys := r.mr.Keys(); len(keys) != 0 {
		t.Fatalf("bad input wrote %q", keys)
	}
}

// TestUserIDsQuotedInErrors: a user id holding line breaks never reaches
// an error string raw, whatever fails (a foreign key, a Redis error
// reply, the caller's context, a wait past the deadline), from every
// per-user entry point; each error names the user quoted.
func TestUserIDsQuotedInErrors(t *testing.T) {
	for _, user := range []string{"eve\nINFO forged log line", "a\r\nb", "}\n{"} {
		l, r := newTestLimiter(t, userConfig(10*time.Second, 20, time.Hour))
		keys, err := l.UserKeys(user)
		if err != nil {
			t.Fatal(err)
		}
		bg := context.Background()
		cancelled, cancel := context.WithCancel(bg)
		cancel()
		short, cancelShort := context.WithTimeout(bg, time.Second)
		defer cancelShort()
		calls := map[string]func(ctx context.Context) error{
			"Allow":     func(ctx context.Context) error { _, err := l.Allow(ctx, user); return err },
			"AllowMany": func(ctx context.Context) error { _, err := l.AllowMany(ctx, []string{user, user}); return err },
			"Wait":      func(ctx context.Context) error { _, err := l.Wait(ctx, user); return err },
			"Reset":     func(ctx context.Context) error { return l.Reset(ctx, user) },
			"Import":    func(ctx context.Context) error { return l.Import(ctx, user, []time.Time{time.Now()}) },
			"Peek":      func(ctx context.Context) error { _, err := l.Peek(ctx, user); return err },
		}
		for _, cond := range []struct {
			name  string
			setup func()
			ctx   context.Context
			skip  map[string]bool // calls that rightly succeed here
		}{
			{"foreign key", func() { r.mr.Set(keys[0], "not ours") }, bg, map[string]bool{"Reset": true, "Import": true}},
			{"error reply", func() { r.mr.SetError("ERR injected") }, bg, nil},
			{"cancelled", func() {}, cancelled, nil},
			{"wait past deadline", func() { mustAllow(t, l, user) }, short, map[string]bool{"Allow": true, "AllowMany": true, "Reset": true, "Import": true, "Peek": true}},
		} {
			r.mr.FlushAll()
			r.mr.SetError("")
			cond.setup()
			for name, call := range calls {
				if cond.skip[name] {
					continue
				}
				err := call(cond.ctx)
				if err == nil {
					t.Errorf("%q %s, %s: no error", user, cond.name, name)
					continue
				}
				msg := err.Error()
				if strings.ContainsAny(msg, "\r\n") {
					t.Errorf("%q %s, %s: raw line break in %q", user, cond.name, name, msg)
				}
				if !strings.Contains(msg, strconv.Quote(user)[1:len(strconv.Quote(user))-1]) {
					t.Errorf("%q %s, %s: error %q does not name the user", user, cond.name, name, msg)
				}
			}
		}
	}
}
