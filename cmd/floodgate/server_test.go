package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

func TestMain(m *testing.M) {
	redis.SetLogger(cli.QuietLogger{})
	// A dial that failed leaves go-redis retrying in the background for a
	// second after its client closed (pool.tryDial): not a leak of ours.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// testServer is the handler on a miniredis.
type testServer struct {
	t     *testing.T
	mr    *miniredis.Miniredis
	s     *server
	drain context.CancelFunc
	logs  *logBuffer
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func testConfig() limiter.Config {
	cfg := limiter.DefaultConfig()
	cfg.LocalCacheSize = 0
	cfg.APIRates = limiter.APIRates{"wikipedia": {PerSecond: 1, Burst: 1}, "igdb": {PerSecond: 4, Burst: 2}}
	return cfg
}

func testSettings() httpSettings {
	return httpSettings{Addr: defaultAddr, MaxWait: 2 * time.Second, MaxWaits: 4, ShutdownTimeout: time.Second}
}

// testLimiter is a Limiter on cfg over a new miniredis, its client closed
// when the test ends.
func testLimiter(t *testing.T, cfg limiter.Config) (*miniredis.Miniredis, *redis.Client, *limiter.Limiter) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	lim, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A test closing miniredis during New's INFO crashed the test binary
	// (miniredis v2.40.0's INFO reads the closed server).
	evictionChecked(lim)
	return mr, rdb, lim
}

func newTestServer(t *testing.T, cfg limiter.Config, set httpSettings) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	obs, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Observer = obs
	mr, rdb, lim := testLimiter(t, cfg)
	draining, drain := context.WithCancel(context.Background())
	t.Cleanup(drain)
	logs := &logBuffer{}
	s, err := newServer(lim, rdb, set, reg, draining, logs.logf)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{t: t, mr: mr, s: s, drain: drain, logs: logs}
}

// redisDownServer is a server whose Redis stops answering at once, each
// call giving up after 100 ms; tweak sets the failure modes.
func redisDownServer(t *testing.T, tweak func(*limiter.Config)) *testServer {
	t.Helper()
	cfg := testConfig()
	cfg.RedisTimeout = 100 * time.Millisecond
	tweak(&cfg)
	ts := newTestServer(t, cfg, testSettings())
	ts.mr.Close()
	return ts
}

// do sends one request and returns status, decoded JSON body (nil when
// empty) and headers.
func (ts *testServer) do(method, path, body string, hdr ...string) (int, map[string]any, http.Header) {
	ts.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	ts.s.ServeHTTP(w, req)
	res := w.Result()
	data, _ := io.ReadAll(res.Body)
	var m map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &m); err != nil {
			ts.t.Fatalf("%s %s: %d with a body that is not a JSON object: %q", method, path, res.StatusCode, data)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" && !strings.HasPrefix(path, "/metrics") {
			ts.t.Fatalf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	return res.StatusCode, m, res.Header
}

func TestUserRoutes(t *testing.T) {
	cfg := testConfig()
	cfg.UserCooldown = 10 * time.Second
	cfg.MaxRequestsPerUserHour = 2
	ts := newTestServer(t, cfg, testSettings())

	code, d, hdr := ts.do("POST", "/v1/users/alice/allow", "")
	if code != 200 || d["allowed"] != true || d["reason"] != "none" || d["remaining"] != 1.0 || hdr.Get("Retry-After") != "" {
		t.Fatalf("first allow: %d %v %v", code, d, hdr)
	}
	code, d, hdr = ts.do("POST", "/v1/users/alice/allow", "")
	// The cooldown counts from the first request's time rounded up to the
	// millisecond (never early), so a request in the same millisecond waits
	// up to 10.001 s, which Retry-After rounds up to 11.
	if ra := hdr.Get("Retry-After"); code != 200 || d["allowed"] != false || d["reason"] != "cooldown" || (ra != "10" && ra != "11") {
		t.Fatalf("second allow: %d %v Retry-After %q", code, d, hdr.Get("Retry-After"))
	}
	for _, k := range []string{"allowed", "reason", "remaining", "retry_after_ms", "reset_after_ms", "degraded", "cached"} {
		if _, ok := d[k]; !ok {
			t.Fatalf("decision lacks %q: %v", k, d)
		}
	}
	code, p, _ := ts.do("GET", "/v1/users/alice", "")
	if code != 200 || p["user"] != "alice" || p["entries"] != 1.0 || p["reason"] != "cooldown" || p["remaining"] != 1.0 {
		t.Fatalf("peek: %d %v", code, p)
	}
	// Peeking counted nothing: the window still holds one entry.
	if _, p2, _ := ts.do("GET", "/v1/users/alice", ""); p2["entries"] != 1.0 {
		t.Fatalf("second peek: %v", p2)
	}
	if code, body, _ := ts.do("DELETE", "/v1/users/alice", ""); code != 204 || body != nil {
		t.Fatalf("reset: %d %v", code, body)
	}
	if code, d, _ := ts.do("POST", "/v1/users/alice/allow", ""); code != 200 || d["allowed"] != true {
		t.Fatalf("allow after reset: %d %v", code, d)
	}
	// Any bytes: "%2F" is a slash inside the id, distinct from other ids.
	if code, d, _ := ts.do("POST", "/v1/users/a%2Fb/allow", ""); code != 200 || d["allowed"] != true {
		t.Fatalf("escaped id: %d %v", code, d)
	}
	if _, p, _ := ts.do("GET", "/v1/users/a%2Fb", ""); p["user"] != "a/b" || p["entries"] != 1.0 {
		t.Fatalf("escaped id peek: %v", p)
	}
	if _, p, _ := ts.do("GET", "/v1/users/%2E", ""); p["user"] != "." {
		t.Fatalf("'.' id sent as %%2E: %v", p)
	}
}

func TestBackoffRoutes(t *testing.T) {
	cfg := testConfig()
	cfg.LLMRetryDelay = time.Second
	ts := newTestServer(t, cfg, testSettings())
	code, d, _ := ts.do("POST", "/v1/backoff/llm/endpoints/gpu1/check", "")
	if code != 200 || d["allowed"] != true || d["probe"] != false {
		t.Fatalf("check closed: %d %v", code, d)
	}
	code, d, hdr := ts.do("POST", "/v1/backoff/llm/endpoints/gpu1/failure", "")
	if code != 200 || d["allowed"] != false || d["reason"] != "backoff" || d["retry_after_ms"] != 1000.0 || hdr.Get("Retry-After") != "1" {
		t.Fatalf("failure: %d %v %v", code, d, hdr)
	}
	code, st, _ := ts.do("GET", "/v1/backoff/llm/endpoints/gpu1", "")
	if code != 200 || st["state"] != "open" || st["opens"] != 1.0 || st["failures"] != 1.0 || st["delay_ms"] != 1000.0 {
		t.Fatalf("status: %d %v", code, st)
	}
	code, d, _ = ts.do("POST", "/v1/backoff/llm/pick", `{"endpoints":["gpu1","gpu2"]}`)
	if code != 200 || d["endpoint"] != "gpu2" || d["allowed"] != true {
		t.Fatalf("pick: %d %v", code, d)
	}
	if code, body, _ := ts.do("POST", "/v1/backoff/llm/endpoints/gpu1/success", ""); code != 204 || body != nil {
		t.Fatalf("success: %d %v", code, body)
	}
	if _, st, _ := ts.do("GET", "/v1/backoff/llm/endpoints/gpu1", ""); st["state"] != "closed" {
		t.Fatalf("after success: %v", st)
	}
	code, d, _ = ts.do("POST", "/v1/backoff/llm/pick", `{"endpoints":["gpu1"]}`)
	if code != 200 || d["endpoint"] != "gpu1" {
		t.Fatalf("pick after success: %d %v", code, d)
	}

	// The half-open probe: one caller gets it with a token, the next is
	// denied (probing) until the probe is abandoned.
	ts.do("POST", "/v1/backoff/llm/endpoints/gpu3/failure", "")
	ts.mr.FastForward(2 * time.Second)
	ts.mr.SetTime(time.Now().Add(2 * time.Second))
	code, d, _ = ts.do("POST", "/v1/backoff/llm/endpoints/gpu3/check", "")
	token, _ := d["token"].(string)
	if code != 200 || d["allowed"] != true || d["probe"] != true || token == "" {
		t.Fatalf("probe: %d %v", code, d)
	}
	if code, d, _ := ts.do("POST", "/v1/backoff/llm/endpoints/gpu3/check", ""); code != 200 || d["reason"] != "probing" || d["token"] != nil {
		t.Fatalf("second caller while probing: %d %v", code, d)
	}
	if _, st, _ := ts.do("GET", "/v1/backoff/llm/endpoints/gpu3", ""); st["state"] != "half-open" || st["probing"] != true {
		t.Fatalf("status while probing: %v", st)
	}
	if code, body, _ := ts.do("POST", "/v1/backoff/llm/endpoints/gpu3/abandon", `{"token":"`+token+`"}`); code != 204 || body != nil {
		t.Fatalf("abandon: %d %v", code, body)
	}
	if code, d, _ := ts.do("POST", "/v1/backoff/llm/endpoints/gpu3/check", ""); code != 200 || d["probe"] != true {
		t.Fatalf("check after abandon: %d %v", code, d)
	}
	if code, body, _ := ts.do("POST", "/v1/backoff/llm/endpoints/gpu3/abandon", `{"token":"not a token"}`); code != 400 {
		t.Fatalf("abandon with a malformed token: %d %v", code, body)
	}
}

func TestBucketRoutes(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	for i, want := range []bool{true, true, false} {
		code, d, hdr := ts.do("POST", "/v1/buckets/igdb/allow", "")
		if code != 200 || d["allowed"] != want || (!want && (d["reason"] != "rate" || hdr.Get("Retry-After") != "1")) {
			t.Fatalf("allow %d: %d %v %v", i, code, d, hdr)
		}
	}
	if code, d, _ := ts.do("POST", "/v1/buckets/wikipedia/allow", `{"n":1}`); code != 200 || d["allowed"] != true {
		t.Fatalf("wikipedia: %d %v", code, d)
	}
}

// A wait whose next try would pass timeout_ms answers at once with the
// denial and its retry_after_ms; one that fits waits and is allowed.
func TestBucketWaitTimeout(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	ts.do("POST", "/v1/buckets/wikipedia/allow", "")
	start := time.Now()
	code, d, hdr := ts.do("POST", "/v1/buckets/wikipedia/wait", `{"timeout_ms":50}`)
	if code != 200 || d["allowed"] != false || d["reason"] != "rate" || d["retry_after_ms"].(float64) < 500 || hdr.Get("Retry-After") != "1" {
		t.Fatalf("wait past its timeout: %d %v %v", code, d, hdr)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a wait that cannot succeed within 50ms took %v", took)
	}
	// miniredis's TIME follows the wall clock unless set: a real wait.
	code, d, _ = ts.do("POST", "/v1/buckets/wikipedia/wait", `{"timeout_ms":2000}`)
	if code != 200 || d["allowed"] != true {
		t.Fatalf("wait within its timeout: %d %v", code, d)
	}
}

func TestSlotsRoutes(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConcurrentUsers = 1
	ts := newTestServer(t, cfg, testSettings())
	code, a, _ := ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"u1"}`)
	if code != 200 || a["acquired"] != true || a["lease_ms"] != 30000.0 || a["degraded"] != false {
		t.Fatalf("acquire: %d %v", code, a)
	}
	code, b, hdr := ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"u2"}`)
	// The wait is the library's: until the holder's 30 s lease ends.
	if ra, _ := b["retry_after_ms"].(float64); code != 200 || b["acquired"] != false || b["reason"] != "slots" ||
		hdr.Get("Retry-After") == "" || ra <= 1000 || ra > 30000 {
		t.Fatalf("acquire on a full pool: %d %v", code, b)
	}
	start := time.Now()
	code, b, hdr = ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"u2","wait":true,"timeout_ms":200}`)
	// A timed-out wait says 1000 (docs/sidecar.md).
	if code != 200 || b["acquired"] != false || b["retry_after_ms"] != 1000.0 || hdr.Get("Retry-After") != "1" || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("wait on a full pool: %d %v after %v", code, b, time.Since(start))
	}
	code, st, _ := ts.do("GET", "/v1/slots/gpu", "")
	if code != 200 || st["size"] != 1.0 || st["in_use"] != 1.0 || st["waiting"] != 0.0 {
		t.Fatalf("status: %d %v", code, st)
	}
	token, _ := a["token"].(string)
	if token == "" {
		t.Fatalf("no token: %v", a)
	}
	tok := `{"token":"` + token + `"}`
	if code, body, _ := ts.do("POST", "/v1/slots/gpu/refresh", tok); code != 204 || body != nil {
		t.Fatalf("refresh: %d %v", code, body)
	}
	if code, body, _ := ts.do("POST", "/v1/slots/other/refresh", tok); code != 400 || !strings.Contains(body["error"].(string), "given to pool") {
		t.Fatalf("token of another pool: %d %v", code, body)
	}
	if code, body, _ := ts.do("POST", "/v1/slots/gpu/release", `{"token":"r.bad"}`); code != 400 || !strings.Contains(body["error"].(string), "malformed lease token") {
		t.Fatalf("malformed token: %d %v", code, body)
	}
	if code, body, _ := ts.do("POST", "/v1/slots/gpu/release", tok); code != 204 || body != nil {
		t.Fatalf("release: %d %v", code, body)
	}
	for _, op := range []string{"release", "refresh"} {
		if code, body, _ := ts.do("POST", "/v1/slots/gpu/"+op, tok); code != 409 || !strings.Contains(body["error"].(string), "lease lost") {
			t.Fatalf("%s after release: %d %v, want 409", op, code, body)
		}
	}
	if _, st, _ := ts.do("GET", "/v1/slots/gpu", ""); st["in_use"] != 0.0 {
		t.Fatalf("after release: %v", st)
	}
	if code, b, _ := ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"u2","wait":true,"timeout_ms":1000}`); code != 200 || b["acquired"] != true {
		t.Fatalf("wait on a free pool: %d %v", code, b)
	}
}

func TestOpsRoutes(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	if code, b, _ := ts.do("GET", "/healthz", ""); code != 200 || b["status"] != "ok" {
		t.Fatalf("healthz: %d %v", code, b)
	}
	if code, b, _ := ts.do("GET", "/readyz", ""); code != 200 || b["status"] != "ready" {
		t.Fatalf("readyz: %d %v", code, b)
	}
	ts.do("POST", "/v1/users/bob/allow", "")
	req := httptest.NewRequest("GET", "/metrics", nil)
	w := httptest.NewRecorder()
	ts.s.ServeHTTP(w, req)
	text := w.Body.String()
	for _, want := range []string{
		`floodgate_http_requests_total{code="200",route="POST /v1/users/{user}/allow"} 1`,
		`floodgate_http_request_duration_seconds_count{route="GET /readyz"} 1`,
		`floodgate_decisions_total{allowed="true",policy="user",reason="none"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, text)
		}
	}
	ts.do("GET", "/v1/users/bob/nothing", "")
	req = httptest.NewRequest("GET", "/metrics", nil)
	w = httptest.NewRecorder()
	ts.s.ServeHTTP(w, req)
	text = w.Body.String()
	if !strings.Contains(text, `floodgate_http_requests_total{code="404",route="other"} 1`) {
		t.Fatalf("/metrics lacks the unmatched request:\n%s", text)
	}
	if strings.Contains(text, "bob") {
		t.Fatal("/metrics carries a user id")
	}
	ts.mr.Close()
	code, b, _ := ts.do("GET", "/readyz", "")
	if code != 503 || !strings.HasPrefix(b["error"].(string), "redis did not answer") {
		t.Fatalf("readyz with Redis down: %d %v", code, b)
	}
	if code, b, _ := ts.do("GET", "/healthz", ""); code != 200 || b["status"] != "ok" {
		t.Fatalf("healthz with Redis down: %d %v", code, b)
	}
}

// Under FailClosed with Redis down a decision is a 503 carrying the
// decision (reason redis_down) and an error; under FailLocal a 200 marked
// degraded.
func TestRedisDown(t *testing.T) {
	ts := redisDownServer(t, func(c *limiter.Config) { c.OnRedisError = limiter.FailClosed })
	code, d, hdr := ts.do("POST", "/v1/users/alice/allow", "")
	if code != 503 || d["allowed"] != false || d["reason"] != "redis_down" || d["degraded"] != true || d["error"] == nil || hdr.Get("Retry-After") == "" {
		t.Fatalf("fail closed: %d %v", code, d)
	}
	code, d, _ = ts.do("POST", "/v1/buckets/igdb/allow", "")
	if code != 200 || d["allowed"] != true || d["degraded"] != true {
		t.Fatalf("bucket fails local: %d %v", code, d)
	}
	code, d, _ = ts.do("GET", "/v1/users/alice", "")
	if msg, _ := d["error"].(string); code != 503 || !strings.Contains(msg, "redis unavailable") || strings.Count(msg, "redis unavailable") > 1 {
		t.Fatalf("peek with Redis down: %d %v (said once)", code, d)
	}
}

func TestAllowMany(t *testing.T) {
	cfg := testConfig()
	cfg.UserCooldown = 0
	cfg.MaxRequestsPerUserHour = 2
	ts := newTestServer(t, cfg, testSettings())
	code, body, hdr := ts.do("POST", "/v1/allow-many", `{"users":["a","b","a","a"]}`)
	ds, _ := body["decisions"].([]any)
	if code != 200 || len(ds) != 4 {
		t.Fatalf("%d %v", code, body)
	}
	// One answer for many users: no RateLimit headers (docs/sidecar.md).
	if hdr.Get("RateLimit") != "" || hdr.Get("RateLimit-Policy") != "" || hdr.Get("Retry-After") != "" {
		t.Fatalf("allow-many carries RateLimit headers: %v", hdr)
	}
	want := []bool{true, true, true, false}
	for i, w := range want {
		d := ds[i].(map[string]any)
		if d["allowed"] != w || d["error"] != nil {
			t.Fatalf("decision %d: %v, want allowed %v", i, d, w)
		}
	}
	if d := ds[3].(map[string]any); d["reason"] != "window" {
		t.Fatalf("the third request of a: %v", d)
	}
	// A foreign key fails its user alone; the others stand (counted).
	if err := ts.mr.Set("floodgate:{u:mallory}:w", "x"); err != nil {
		t.Fatal(err)
	}
	code, body, _ = ts.do("POST", "/v1/allow-many", `{"users":["c","mallory","d"]}`)
	ds, _ = body["decisions"].([]any)
	if code != 200 || len(ds) != 3 {
		t.Fatalf("with a foreign key: %d %v", code, body)
	}
	if m := ds[1].(map[string]any); m["allowed"] != false || !strings.Contains(fmt.Sprint(m["error"]), "did not write") {
		t.Fatalf("mallory: %v", m)
	}
	for _, i := range []int{0, 2} {
		if m := ds[i].(map[string]any); m["allowed"] != true || m["error"] != nil {
			t.Fatalf("decision %d beside a failed one: %v", i, m)
		}
	}
	for _, tc := range []struct{ body, want string }{
		{``, "want a JSON object"},
		{`{"users":[]}`, "non-empty"},
		{`{"users":"a"}`, `"users" must be an array`},
		{`{"users":["a",""]}`, "users[1]"},
		{`{"users":[` + strings.Repeat(`"a",`, 1000) + `"a"]}`, "at most 1000"},
	} {
		code, body, _ := ts.do("POST", "/v1/allow-many", tc.body)
		if code != 400 || !strings.Contains(fmt.Sprint(body["error"]), tc.want) {
			t.Errorf("%.40q: %d %v, want 400 with %q", tc.body, code, body, tc.want)
		}
	}
}

// Any bytes in a user id come back as valid JSON (invalid UTF-8 as
// U+FFFD, which JSON cannot carry otherwise).
func TestUserIDsAsJSON(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	for _, path := range []string{"/v1/users/%00%07%1F%22%5C", "/v1/users/%FF%FE", "/v1/users/%E2%80%A8"} {
		code, body, _ := ts.do("GET", path, "") // do fails on invalid JSON
		if code != 200 || body["user"] == nil {
			t.Fatalf("%s: %d %v", path, code, body)
		}
	}
	if _, body, _ := ts.do("GET", "/v1/users/%00%07%22", ""); body["user"] != "\x00\x07\"" {
		t.Fatalf("control characters: %q", body["user"])
	}
}

// A client that goes away mid-wait ends the wait at once and leaves no
// log line (it is not a server fault).
func TestClientGoneMidWait(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	ts.do("POST", "/v1/buckets/wikipedia/allow", "")
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("POST", "/v1/buckets/wikipedia/wait", strings.NewReader(`{"timeout_ms":2000}`)).WithContext(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	w := httptest.NewRecorder()
	ts.s.ServeHTTP(w, req)
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("the wait outlived its client by %v", took)
	}
	if log := ts.logs.String(); log != "" {
		t.Fatalf("logged: %q", log)
	}
	if len(ts.s.waits) != 0 {
		t.Fatalf("%d wait places still held", len(ts.s.waits))
	}
}

// Millisecond fields and Retry-After round up (docs/sidecar.md), so a
// client that waits them is never early.
func TestRoundingUp(t *testing.T) {
	for _, tc := range []struct {
		d       time.Duration
		ms, sec int64
	}{
		{-time.Second, 0, 1},
		{0, 0, 1},
		{time.Nanosecond, 1, 1},
		{time.Millisecond, 1, 1},
		{time.Millisecond + time.Nanosecond, 2, 1},
		{time.Second, 1000, 1},
		{time.Second + time.Nanosecond, 1001, 2},
	} {
		if ms, sec := ceilMs(tc.d), retryAfterSeconds(tc.d); ms != tc.ms || sec != tc.sec {
			t.Errorf("%v: %d ms, Retry-After %d; want %d, %d", tc.d, ms, sec, tc.ms, tc.sec)
		}
	}
}
