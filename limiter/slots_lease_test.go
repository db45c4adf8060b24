package limiter

import (
	"context"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// A token carries a Redis lease to another process (another Limiter on the
// same Redis): it refreshes and releases the same grant there, and the
// original handle then finds the lease lost.
func TestLeaseTokenAcrossProcesses(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	ctx := context.Background()
	s := mustSlots(t, l, "llm", 1, 10*time.Second)
	orig := mustTry(t, s, "alice:ü/?&=")
	token := orig.Token()
	if !urlSafe.MatchString(token) {
		t.Fatalf("token %q is not URL-safe", token)
	}

	other, err := New(r.rdb, slotsConfig())
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := mustSlots(t, other, "llm", 1, 10*time.Second).Lease(token)
	if err != nil {
		t.Fatalf("Lease(token): %v", err)
	}
	if rebuilt.Holder() != "alice:ü/?&=" || rebuilt.Degraded() || rebuilt.Token() != token {
		t.Fatalf("rebuilt lease = holder %q degraded %v token %q", rebuilt.Holder(), rebuilt.Degraded(), rebuilt.Token())
	}
	r.at(6 * time.Second)
	if err := rebuilt.Refresh(ctx); err != nil {
		t.Fatalf("Refresh via token: %v", err)
	}
	if ttl := r.mr.TTL(holdersKey); ttl != 10*time.Second {
		t.Fatalf("holders TTL after Refresh = %v, want 10s from the refresh", ttl)
	}
	wantNoSlot(t, s, "bob")
	if err := rebuilt.Release(ctx); err != nil {
		t.Fatalf("Release via token: %v", err)
	}
	if err := orig.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("original Release after the token's = %v, want ErrLeaseLost", err)
	}
	mustTry(t, s, "bob")
	// A stale token rebuilds, but its lease is lost.
	stale, err := s.Lease(token)
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Refresh(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Refresh of a released lease's token = %v, want ErrLeaseLost", err)
	}
}

// Degraded leases say so in their token: an open lease stays a no-op
// anywhere; an in-process lease works in the process that granted it and
// is lost elsewhere.
func TestLeaseTokenDegraded(t *testing.T) {
	ctx := context.Background()
	cfg := slotsConfig()
	cfg.SlotsOnRedisError = FailOpen
	l := downLimiter(t, cfg)
	open, err := mustSlots(t, l, "llm", 1, time.Minute).TryAcquire(ctx, "a")
	if err != nil || !open.Degraded() {
		t.Fatalf("FailOpen TryAcquire = %+v, %v", open, err)
	}
	rebuilt, err := mustSlots(t, l, "llm", 1, time.Minute).Lease(open.Token())
	if err != nil || !rebuilt.Degraded() || rebuilt.Holder() != "a" {
		t.Fatalf("Lease(open token) = %+v, %v", rebuilt, err)
	}
	if rebuilt.Refresh(ctx) != nil || rebuilt.Release(ctx) != nil {
		t.Fatal("an open lease rebuilt from its token fails Refresh or Release")
	}

	cfg.SlotsOnRedisError = FailLocal
	l = downLimiter(t, cfg)
	s := mustSlots(t, l, "llm", 1, time.Minute)
	local, err := s.TryAcquire(ctx, "a")
	if err != nil || !local.Degraded() {
		t.Fatalf("FailLocal TryAcquire = %+v, %v", local, err)
	}
	token := local.Token()
	elsewhere, err := mustSlots(t, downLimiter(t, cfg), "llm", 1, time.Minute).Lease(token)
	if err != nil || !elsewhere.Degraded() {
		t.Fatalf("Lease(local token) in another process = %+v, %v", elsewhere, err)
	}
	if err := elsewhere.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Release of another process's in-process lease = %v, want ErrLeaseLost", err)
	}
	wantNoSlot(t, s, "b") // still held here
	here, err := s.Lease(token)
	if err != nil || !here.Degraded() {
		t.Fatalf("Lease(local token) here = %+v, %v", here, err)
	}
	if err := here.Release(ctx); err != nil {
		t.Fatalf("Release via local token: %v", err)
	}
	if err := local.Release(ctx); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("second Release = %v, want ErrLeaseLost", err)
	}
	mustTry(t, s, "b")
}

// Malformed tokens and tokens of another pool are ErrInvalidArgument and
// never reach Redis.
func TestLeaseTokenInvalid(t *testing.T) {
	l, r := newTestLimiter(t, slotsConfig())
	s := mustSlots(t, l, "llm", 1, time.Minute)
	good := mustTry(t, s, "alice")
	b64 := base64.RawURLEncoding.EncodeToString
	id := strings.Repeat("A", memberIDLen)
	before := r.mr.CommandCount()
	for _, c := range []struct{ name, token, mention string }{
		{"empty", "", "malformed"},
		{"one part", "r", "3 parts"},
		{"four parts", good.Token() + ".x", "3 parts"},
		{"bad mode", "x" + good.Token()[1:], "mode"},
		{"empty mode", good.Token()[1:], "mode"},
		{"pool not base64", "r.!!." + b64([]byte(id+":a")), "pool"},
		{"pool with padding", "r." + base64.URLEncoding.EncodeToString([]byte("ll")) + "." + b64([]byte(id+":a")), "pool is not base64url"},
		{"grant not base64", "r." + b64([]byte("llm")) + ".%%", "grant"},
		{"no holder", "r." + b64([]byte("llm")) + "." + b64([]byte(id+":")), "grant"},
		{"no colon", "r." + b64([]byte("llm")) + "." + b64([]byte(id+"a")), "grant"},
		{"short id", "r." + b64([]byte("llm")) + "." + b64([]byte("ABC:a")), "grant"},
		{"lowercase id", "r." + b64([]byte("llm")) + "." + b64([]byte(strings.ToLower(id)+":a")), "grant"},
		{"holder too long", "r." + b64([]byte("llm")) + "." + b64([]byte(id+":"+strings.Repeat("u", MaxUserLen+1))), "grant"},
		{"huge", strings.Repeat("A", 1<<20), "bytes"},
		{"other pool", "r." + b64([]byte("images")) + "." + b64([]byte(id+":a")), `"images" given to pool "llm"`},
		// Altered to claim a fail-open lease, which holds nothing: its
		// Release would succeed and leave alice's slot held.
		{"fail-open mode, pool not failing open", "o" + good.Token()[1:], "fail-open"},
	} {
		lease, err := s.Lease(c.token)
		if lease != nil || !refused(err, ErrInvalidArgument, c.mention) {
			t.Errorf("%s: Lease(%.40q) = %v, %v; want ErrInvalidArgument mentioning %q", c.name, c.token, lease, err, c.mention)
		}
	}
	open := slotsConfig()
	open.SlotsOnRedisError = FailOpen
	lo, _ := newTestLimiter(t, open)
	if lease, err := mustSlots(t, lo, "llm", 1, time.Minute).Lease("o" + good.Token()[1:]); err != nil || !lease.open {
		t.Errorf("fail-open pool: Lease(o. token) = %+v, %v; want a fail-open lease", lease, err)
	}
	var nilSlots *Slots
	if _, err := nilSlots.Lease(good.Token()); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Lease on nil Slots = %v", err)
	}
	var nilLease *Lease
	if tok := nilLease.Token(); tok != "" {
		t.Errorf("nil Lease Token = %q, want empty", tok)
	}
	if n := r.mr.CommandCount() - before; n != 0 {
		t.Fatalf("invalid tokens sent %d commands to Redis", n)
	}
	// The id is rand.Text's: newMember's output always parses.
	for range 100 {
		if h, ok := holderOf(newMember("x")); !ok || h != "x" {
			t.Fatalf("holderOf(newMember) = %q, %v", h, ok)
		}
	}
}

// Any string either rebuilds a lease whose token is that string, or is
// ErrInvalidArgument; nothing panics.
func FuzzLeaseToken(f *testing.F) {
	f.Add("r.bGxt.QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE6YQ")
	f.Add("o.bGxt.QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE6YQ")
	f.Add("l..")
	f.Add("")
	l, err := New(newTestRedis(f).rdb, slotsConfig())
	if err != nil {
		f.Fatal(err)
	}
	s := mustSlots(f, l, "llm", 1, time.Minute)
	f.Fuzz(func(t *testing.T, token string) {
		lease, err := s.Lease(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Lease(%q) = %v, want ErrInvalidArgument", token, err)
			}
			return
		}
		if got := lease.Token(); got != token {
			t.Fatalf("Lease(%q).Token() = %q", token, got)
		}
	})
}
