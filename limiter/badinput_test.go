package limiter

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadInputAtEveryEntryPoint feeds each public method bad input and
// checks the error names the problem (errors.Is on the sentinel, and the
// words of mention) and starts with the package name, that a constructor
// returns no handle with it, and that not one command reached Redis:
// nothing is half-written.
func TestBadInputAtEveryEntryPoint(t *testing.T) {
	l, r := newTestLimiter(t, DefaultConfig())
	ctx := context.Background()
	long := strings.Repeat("x", MaxUserLen+1)
	longName := strings.Repeat("n", MaxNameLen+1)
	api := mustBucket(t, l, "api", 1, 2)
	llm := mustSlots(t, l, "llm", 7, time.Second)
	var (
		nilLimiter *Limiter
		zeroBucket Bucket
		nilBucket  *Bucket
		zeroSlots  Slots
		nilLease   *Lease
	)
	bucket := func(name string, perSecond float64, burst int) func() error {
		return func() error { return refusal(l.Bucket(name, BucketSettings{PerSecond: perSecond, Burst: burst})) }
	}
	slots := func(name string, size int, lease time.Duration) func() error {
		return func() error { return refusal(l.Slots(name, SlotsSettings{Size: size, Lease: lease})) }
	}
	before := r.mr.CommandCount()
	for _, tc := range []struct {
		name    string
		call    func() error
		want    error
		mention string
	}{
		{"Allow empty", func() error { _, err := l.Allow(ctx, ""); return err }, ErrInvalidUser, ""},
		{"Allow oversized", func() error { _, err := l.Allow(ctx, long); return err }, ErrInvalidUser, ""},
		{"Wait empty", func() error { _, err := l.Wait(ctx, ""); return err }, ErrInvalidUser, ""},
		{"AllowMany one empty", func() error { _, err := l.AllowMany(ctx, []string{"a", ""}); return err }, ErrInvalidUser, ""},
		{"AllowMany oversized", func() error { _, err := l.AllowMany(ctx, []string{long}); return err }, ErrInvalidUser, ""},
		{"Reset empty", func() error { return l.Reset(ctx, "") }, ErrInvalidUser, ""},
		{"Import oversized", func() error { return l.Import(ctx, long, []time.Time{time.Now()}) }, ErrInvalidUser, ""},
		{"Backoff empty name", func() error { return refusal(l.Backoff("", BackoffSettings{})) }, ErrInvalidName, "empty"},
		{"Backoff name with braces", func() error { return refusal(l.Backoff("a{b}", BackoffSettings{})) }, ErrInvalidName, "'{'"},
		{"Backoff bad settings", func() error { return refusal(l.Backoff("llm", BackoffSettings{Multiplier: 0.5})) }, ErrInvalidArgument, "Multiplier"},
		{"Backoff empty endpoint", func() error { _, err := mustBackoff(t, l, "llm").Failure(ctx, ""); return err }, ErrInvalidName, ""},
		{"Backoff oversized endpoint", func() error { return mustBackoff(t, l, "llm").Success(ctx, longName) }, ErrInvalidName, ""},
		{"Backoff non-UTF-8 endpoint", func() error { _, err := mustBackoff(t, l, "llm").Check(ctx, "\xff"); return err }, ErrInvalidName, ""},
		{"Pick none", func() error { _, _, err := mustBackoff(t, l, "llm").Pick(ctx); return err }, ErrInvalidArgument, ""},
		{"Pick one bad", func() error { _, _, err := mustBackoff(t, l, "llm").Pick(ctx, "ok", ""); return err }, ErrInvalidName, ""},
		{"Bucket NaN rate", bucket("api", math.NaN(), 1), ErrInvalidArgument, "NaN"},
		{"Bucket negative rate", bucket("api", -1, 0), ErrInvalidArgument, "-1"},
		{"Bucket negative rate, burst", bucket("api", -4, 1), ErrInvalidArgument, "-4"},
		{"Bucket infinite rate", bucket("api", math.Inf(1), 1), ErrInvalidArgument, "+Inf"},
		{"Bucket rate over 1e6", bucket("api", 1e6+1, 1), ErrInvalidArgument, "1e+06"},
		{"Bucket negative burst", bucket("api", 4, -1), ErrInvalidArgument, "burst"},
		{"Bucket burst over 1<<20", bucket("api", 4, 1<<20+1), ErrInvalidArgument, "burst"},
		{"Bucket huge burst", bucket("api", 1, math.MaxInt), ErrInvalidArgument, "burst"},
		{"Bucket refill too slow", bucket("api", 1e-9, 1), ErrInvalidArgument, "refill"},
		{"Bucket listed rate, negative burst", bucket("wikipedia", 0, -1), ErrInvalidArgument, "burst"},
		{"Bucket unlisted", bucket("nope", 0, 0), ErrInvalidName, "APIRates"},
		{"Bucket unlisted, burst", bucket("unlisted", 0, 1), ErrInvalidName, "APIRates"},
		{"Bucket empty name", bucket("", 4, 1), ErrInvalidName, "empty"},
		{"Bucket oversized name", bucket(longName, 4, 1), ErrInvalidName, "bytes"},
		{"Bucket non-UTF-8 name", bucket("\xff", 4, 1), ErrInvalidName, "UTF-8"},
		{"Bucket AllowN over burst", func() error { _, err := api.AllowN(ctx, 3); return err }, ErrInvalidArgument, ""},
		{"Bucket AllowN zero", func() error { _, err := api.AllowN(ctx, 0); return err }, ErrInvalidArgument, ""},
		{"Bucket AllowN negative", func() error { _, err := api.AllowN(ctx, -1); return err }, ErrInvalidArgument, ""},
		{"Bucket WaitN over burst", func() error { _, err := api.WaitN(ctx, 3); return err }, ErrInvalidArgument, ""},
		{"Bucket WaitN zero", func() error { _, err := api.WaitN(ctx, 0); return err }, ErrInvalidArgument, ""},
		{"Bucket WaitN negative", func() error { _, err := api.WaitN(ctx, -1); return err }, ErrInvalidArgument, ""},
		{"zero Bucket Allow", func() error { _, err := zeroBucket.Allow(ctx); return err }, ErrInvalidArgument, ""},
		{"nil Bucket Wait", func() error { _, err := nilBucket.Wait(ctx); return err }, ErrInvalidArgument, ""},
		{"Slots negative size", slots("llm", -1, 0), ErrInvalidArgument, "size"},
		{"Slots negative size, lease", slots("llm", -7, time.Second), ErrInvalidArgument, "-7"},
		{"Slots size over 1<<20", slots("llm", 1<<20+1, time.Second), ErrInvalidArgument, "size"},
		{"Slots lease under 1ms", slots("llm", 7, time.Millisecond-1), ErrInvalidArgument, "lease"},
		{"Slots negative lease", slots("llm", 0, -time.Second), ErrInvalidArgument, "lease"},
		{"Slots negative lease, size", slots("llm", 7, -time.Second), ErrInvalidArgument, "lease"},
		{"Slots lease over 24h", slots("llm", 7, 24*time.Hour+1), ErrInvalidArgument, "lease"},
		{"Slots empty name", slots("", 0, 0), ErrInvalidName, "empty"},
		{"Slots empty name, settings", slots("", 7, time.Second), ErrInvalidName, "empty"},
		{"Slots oversized name", slots(longName, 7, time.Second), ErrInvalidName, "bytes"},
		{"Slots non-UTF-8 name", slots("\xfe", 7, time.Second), ErrInvalidName, "UTF-8"},
		{"Slots empty holder", func() error { _, err := llm.TryAcquire(ctx, ""); return err }, ErrInvalidUser, ""},
		{"Slots oversized holder", func() error { _, err := llm.Acquire(ctx, long); return err }, ErrInvalidUser, ""},
		{"Slots Acquire empty holder", func() error { _, err := llm.Acquire(ctx, ""); return err }, ErrInvalidUser, ""},
		{"Slots TryAcquire oversized holder", func() error { _, err := llm.TryAcquire(ctx, long); return err }, ErrInvalidUser, ""},
		{"zero Slots", func() error { _, err := zeroSlots.TryAcquire(ctx, "a"); return err }, ErrInvalidArgument, ""},
		{"nil Lease Release", func() error { return nilLease.Release(ctx) }, ErrInvalidArgument, ""},
		{"Backoff on a nil Limiter", func() error { return refusal(nilLimiter.Backoff("llm", BackoffSettings{})) }, ErrInvalidArgument, "nil Limiter"},
		{"Bucket on a nil Limiter", func() error { return refusal(nilLimiter.Bucket("igdb", BucketSettings{})) }, ErrInvalidArgument, "nil Limiter"},
		{"Budget on a nil Limiter", func() error { return refusal(nilLimiter.Budget("llm", BudgetSettings{})) }, ErrInvalidArgument, "nil Limiter"},
		{"Slots on a nil Limiter", func() error { return refusal(nilLimiter.Slots("llm", SlotsSettings{})) }, ErrInvalidArgument, "nil Limiter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !refused(err, tc.want, tc.mention) {
				t.Fatalf("got %v, want %v mentioning %q, starting with the package name", err, tc.want, tc.mention)
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

// refusal is a constructor's error when it must refuse: err, or an error
// that is no refusal when it also returned a handle.
func refusal[P comparable](p P, err error) error {
	var none P
	if p != none {
		return fmt.Errorf("returned %v along with %v", p, err)
	}
	return err
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
