package limiter

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestUserKeysHoldAllState: after decisions under both layouts, every key
// Redis holds for the user is among UserKeys, and deleting them forgets
// the user.
func TestUserKeysHoldAllState(t *testing.T) {
	ctx := context.Background()
	r := newTestRedis(t)
	win, err := New(r.rdb, userConfig(time.Second, 5, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cdOnly, err := New(r.rdb, userConfig(time.Second, 0, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*Limiter{win, cdOnly} {
		if _, err := l.Allow(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := win.UserKeys("alice")
	if err != nil {
		t.Fatal(err)
	}
	got := r.mr.Keys()
	if len(got) != 2 {
		t.Fatalf("Redis holds %q, want two keys", got)
	}
	for _, k := range got {
		if !slices.Contains(keys, k) {
			t.Fatalf("key %q is not in UserKeys %q", k, keys)
		}
	}
	if _, err := win.UserKeys(""); !errors.Is(err, ErrInvalidUser) {
		t.Fatalf("UserKeys(\"\"): %v, want ErrInvalidUser", err)
	}
	var nilL *Limiter
	if _, err := nilL.UserKeys("a"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil UserKeys: %v", err)
	}
}
