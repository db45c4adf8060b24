package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// rlItem is one item of a RateLimit or RateLimit-Policy field.
type rlItem struct {
	name   string
	params map[string]int64
}

// parseRateLimit parses a list of `"name";key=int;...` items, the
// structured-field syntax of draft-ietf-httpapi-ratelimit-headers-11, and
// fails on anything else.
func parseRateLimit(t *testing.T, field string) []rlItem {
	t.Helper()
	var out []rlItem
	for _, raw := range strings.Split(field, ",") {
		raw = strings.TrimSpace(raw)
		parts := strings.Split(raw, ";")
		name, err := strconv.Unquote(parts[0])
		if err != nil || !strings.HasPrefix(parts[0], `"`) {
			t.Fatalf("%q: item %q: the name is no sf-string", field, raw)
		}
		it := rlItem{name: name, params: map[string]int64{}}
		for _, p := range parts[1:] {
			k, v, ok := strings.Cut(p, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if !ok || err != nil || n < 0 || k == "" || strings.ToLower(k) != k {
				t.Fatalf("%q: parameter %q is no key=non-negative sf-integer", field, p)
			}
			it.params[k] = n
		}
		out = append(out, it)
	}
	return out
}

func rlFind(items []rlItem, name string) (rlItem, bool) {
	for _, it := range items {
		if it.name == name {
			return it, true
		}
	}
	return rlItem{}, false
}

// Decisions answered over HTTP carry the IETF RateLimit headers beside
// the JSON and Retry-After (docs/sidecar.md).
func TestRateLimitHeaders(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConcurrentUsers = 1
	ts := newTestServer(t, cfg, testSettings())
	check := func(hdr http.Header, policy map[string]map[string]int64, name string, r, tSec int64) {
		t.Helper()
		pol := parseRateLimit(t, hdr.Get("RateLimit-Policy"))
		for n, want := range policy {
			it, ok := rlFind(pol, n)
			if !ok {
				t.Fatalf("RateLimit-Policy %q lacks %q", hdr.Get("RateLimit-Policy"), n)
			}
			for k, v := range want {
				if it.params[k] != v {
					t.Fatalf("RateLimit-Policy %q: %s %s=%d, want %d", hdr.Get("RateLimit-Policy"), n, k, it.params[k], v)
				}
			}
		}
		rl := parseRateLimit(t, hdr.Get("RateLimit"))
		if len(rl) != 1 || rl[0].name != name || rl[0].params["r"] != r || rl[0].params["t"] != tSec {
			t.Fatalf("RateLimit %q, want %q;r=%d;t=%d", hdr.Get("RateLimit"), name, r, tSec)
		}
		if _, ok := rlFind(pol, name); !ok {
			t.Fatalf("RateLimit names %q, which RateLimit-Policy %q does not list", name, hdr.Get("RateLimit-Policy"))
		}
	}
	userPolicy := map[string]map[string]int64{"user": {"q": 20, "w": 3600}, "cooldown": {"q": 1, "w": 10}}

	_, _, hdr := ts.do("POST", "/v1/users/alice/allow", "")
	check(hdr, userPolicy, "user", 19, 3600)
	_, d, hdr := ts.do("POST", "/v1/users/alice/allow", "")
	// 10 s, or 11 when both requests fall in one millisecond: the cooldown
	// counts from the first one's time rounded up (never early), and the
	// headers round seconds up.
	wait := int64(10)
	if hdr.Get("Retry-After") == "11" {
		wait = 11
	}
	if d["allowed"] != false || hdr.Get("Retry-After") != strconv.FormatInt(wait, 10) {
		t.Fatalf("second request: %v %v", d, hdr)
	}
	check(hdr, userPolicy, "cooldown", 0, wait)

	bucketPolicy := map[string]map[string]int64{"bucket": {"q": 1, "w": 1}}
	_, _, hdr = ts.do("POST", "/v1/buckets/wikipedia/allow", "")
	check(hdr, bucketPolicy, "bucket", 0, 1)
	_, _, hdr = ts.do("POST", "/v1/buckets/wikipedia/allow", "")
	check(hdr, bucketPolicy, "bucket", 0, 1)

	backoffPolicy := map[string]map[string]int64{"backoff": {"q": 1}}
	_, _, hdr = ts.do("POST", "/v1/backoff/llm/endpoints/a/check", "")
	check(hdr, backoffPolicy, "backoff", 1, 0)
	_, _, hdr = ts.do("POST", "/v1/backoff/llm/endpoints/a/failure", "")
	check(hdr, backoffPolicy, "backoff", 0, 5)

	_, _, hdr = ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"a"}`)
	if it, _ := rlFind(parseRateLimit(t, hdr.Get("RateLimit-Policy")), "slots"); it.params["q"] != 1 || hdr.Get("RateLimit") != "" {
		t.Fatalf("acquired: %v", hdr)
	}
	_, _, hdr = ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"b"}`)
	check(hdr, map[string]map[string]int64{"slots": {"q": 1}}, "slots", 0, 30)
}
