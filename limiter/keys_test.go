package limiter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// TestKeysOfIdsWithBraces: ids without braces keep their keys; ids with
// braces get a tag of their own (a hash), both of a user's keys share it,
// and no two ids share a key.
func TestKeysOfIdsWithBraces(t *testing.T) {
	l, _ := newTestLimiter(t, DefaultConfig())
	for id, want := range map[string]string{
		"alice":   "floodgate:{u:alice}:w",
		"12345":   "floodgate:{u:12345}:w",
		"a:b":     "floodgate:{u:a:b}:w",
		"évé ✓":   "floodgate:{u:évé ✓}:w",
		"x}y":     "floodgate:{u:#" + hashTagOf("x}y") + "}/x}y:w",
		"{}":      "floodgate:{u:#" + hashTagOf("{}") + "}/{}:w",
		"#0123ab": "floodgate:{u:#0123ab}:w",
	} {
		keys, err := l.UserKeys(id)
		if err != nil {
			t.Fatal(err)
		}
		if keys[0] != want {
			t.Errorf("UserKeys(%q)[0] = %q, want %q", id, keys[0], want)
		}
		if tag(keys[0]) != tag(keys[1]) {
			t.Errorf("%q: keys %q tagged apart", id, keys)
		}
	}
	seen := map[string]string{}
	tags := map[string]bool{}
	ids := []string{"a", "a}", "{a", "a}x", "a}y", "}", "{", "}{", "{u:a}", "u:a", "#" + hashTagOf("a}x"), "#" + hashTagOf("a}x") + "}/a}x"}
	for i := 0; i < 1000; i++ {
		ids = append(ids, fmt.Sprintf("evil}%d", i))
	}
	for _, id := range ids {
		keys, _ := l.UserKeys(id)
		for _, k := range keys {
			if other, dup := seen[k]; dup {
				t.Fatalf("ids %q and %q share key %q", other, id, k)
			}
			seen[k] = id
		}
		tags[tag(keys[0])] = true
	}
	if len(tags) < 1000 {
		t.Fatalf("%d ids holding '}' share %d tags; want one each", len(ids), len(tags))
	}
}

func hashTagOf(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:hashTagBytes])
}

// tag is a key's Cluster hash tag, by Redis's rule: between the first '{'
// and the first '}' after it.
func tag(key string) string {
	i := strings.IndexByte(key, '{')
	j := strings.IndexByte(key[i+1:], '}')
	return key[i+1 : i+1+j]
}
