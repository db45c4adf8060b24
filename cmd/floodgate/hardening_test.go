package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/listen"
	"github.com/floodgate/floodgate/limiter"
)

// Issue 18's rows, each a test that failed on the server before the fix.

// serveTCP serves ts on a loopback port through the server's own listener
// and http.Server (newHTTPServer), as serve does; tweak may change the
// http.Server first.
func serveTCP(t *testing.T, ts *testServer, set httpSettings, tweak func(*http.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(ts.s, set, ts.logs.logf)
	if tweak != nil {
		tweak(srv)
	}
	go func() { _ = srv.Serve(listen.Limit(ln, set.maxConns(), nil)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// rawExchange sends raw on a new connection and reads one answer; the
// connection stays open for the caller (closed at cleanup).
func rawExchange(t *testing.T, addr, raw string) (*http.Response, string, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%.60q: %v", raw, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(body), &bufConn{Conn: c, r: br}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Row 1: a slot wait while Redis is down under a fail-closed policy is the
// documented 503 redis_down, not a panic; a client that leaves mid-wait
// is no server error.
func TestSlotWaitRedisDownAndDisconnect(t *testing.T) {
	ts := redisDownServer(t, func(c *limiter.Config) { c.SlotsOnRedisError = limiter.FailClosed })
	code, body, hdr := ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"a","wait":true,"timeout_ms":500}`)
	if code != 503 || body["reason"] != "redis_down" || body["acquired"] != false || hdr.Get("Retry-After") == "" {
		t.Fatalf("wait with Redis down: %d %v", code, body)
	}
	if strings.Contains(ts.logs.String(), "panic") {
		t.Fatalf("log: %s", ts.logs.String())
	}

	cfg := testConfig()
	cfg.MaxConcurrentUsers = 1
	ts = newTestServer(t, cfg, testSettings())
	if code, body, _ := ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"a"}`); body["acquired"] != true {
		t.Fatalf("first acquire: %d %v", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("POST", "/v1/slots/gpu/acquire", strings.NewReader(`{"holder":"b","wait":true,"timeout_ms":2000}`)).WithContext(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	w := httptest.NewRecorder()
	ts.s.ServeHTTP(w, req)
	if w.Code >= 500 && w.Code != statusClientGone {
		t.Fatalf("client gone mid-wait: %d %s", w.Code, w.Body)
	}
	if log := ts.logs.String(); log != "" {
		t.Fatalf("logged: %q", log)
	}
	if m := metricsText(t, ts); strings.Contains(m, `code="500"`) {
		t.Fatalf("a disconnect counted as 500:\n%s", m)
	}
}

func metricsText(t *testing.T, ts *testServer) string {
	t.Helper()
	w := httptest.NewRecorder()
	ts.s.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

// Row 2: slot pool and backoff names are capped; past the cap a new name
// is a 400 naming the setting, and known names go on working.
func TestNamesCapped(t *testing.T) {
	set := testSettings()
	set.MaxNames = 3
	ts := newTestServer(t, testConfig(), set)
	for _, rt := range []struct{ method, path, body string }{
		{"GET", "/v1/slots/p%d", ""},
		{"POST", "/v1/slots/p%d/acquire", `{"holder":"a"}`},
		{"GET", "/v1/backoff/b%d/endpoints/e", ""},
		{"POST", "/v1/backoff/b%d/pick", `{"endpoints":["e"]}`},
	} {
		for i := range 3 {
			if code, body, _ := ts.do(rt.method, fmt.Sprintf(rt.path, i), rt.body); code != 200 {
				t.Fatalf("%s %d: %d %v", rt.path, i, code, body)
			}
		}
		code, body, _ := ts.do(rt.method, fmt.Sprintf(rt.path, 3), rt.body)
		if msg, _ := body["error"].(string); code != 400 || !strings.Contains(msg, "FLOODGATE_HTTP_MAX_NAMES") {
			t.Fatalf("%s past the cap: %d %v", rt.path, code, body)
		}
	}
}

// Row 3: a request without the token gets 401 and its connection closed;
// connections past FLOODGATE_HTTP_MAX_CONNS wait until one closes.
func TestConnectionsBounded(t *testing.T) {
	set := testSettings()
	set.Token = "0123456789abcdef0123"
	set.MaxConns = 2
	ts := newTestServer(t, testConfig(), set)
	addr := serveTCP(t, ts, set, nil)
	res, body, c := rawExchange(t, addr, "GET /v1/users/a HTTP/1.1\r\nHost: x\r\n\r\n")
	if res.StatusCode != 401 || !res.Close || !strings.Contains(body, `"error"`) {
		t.Fatalf("401: %d close=%v %s", res.StatusCode, res.Close, body)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("the connection stayed open after 401: %d %v", n, err)
	}

	// Two idle connections hold both places (answered 401 would free them).
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond) // both accepted
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	_, _ = io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _ := third.Read(make([]byte, 1)); n != 0 {
		t.Fatal("a third connection was served past FLOODGATE_HTTP_MAX_CONNS=2")
	}
	idle[0].Close()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err = http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("the third connection once one closed: %v %v", res, err)
	}
	res.Body.Close()
}

// Row 4: a segment of exactly "/" (%2F) is an id or name like any other.
func TestSlashSegment(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	code, body, _ := ts.do("POST", "/v1/users/%2F/allow", "")
	if code != 200 || body["allowed"] != true {
		t.Fatalf("allow %%2F: %d %v", code, body)
	}
	if code, body, _ := ts.do("GET", "/v1/users/%2f", ""); code != 200 || body["user"] != "/" || body["entries"] != 1.0 {
		t.Fatalf("peek %%2f: %d %v", code, body)
	}
	for _, p := range []string{"/v1/slots/%2F", "/v1/backoff/%2F/endpoints/%2F", "/v1/backoff/b/endpoints/%2F"} {
		if code, body, _ := ts.do("GET", p, ""); code != 200 {
			t.Fatalf("GET %s: %d %v", p, code, body)
		}
	}
	if code, body, _ := ts.do("POST", "/v1/backoff/%2F/endpoints/%2F/failure", ""); code != 200 || body["allowed"] != false {
		t.Fatalf("failure on %%2F: %d %v", code, body)
	}
	if _, body, _ := ts.do("GET", "/v1/backoff/%2F/endpoints/%2F", ""); body["failures"] != 1.0 {
		t.Fatalf("the failure was not counted on endpoint \"/\" of breaker \"/\": %v", body)
	}
}

// Row 5: empty, "." and ".." segments anywhere are a 400 JSON answer, not
// a redirect.
func TestDotAndEmptySegments(t *testing.T) {
	set := testSettings()
	set.Token = "0123456789abcdef0123"
	ts := newTestServer(t, testConfig(), set)
	for _, p := range []string{"//v1/users/x/allow", "/x/../v1/users/x/allow", "/./v1/users/x/allow", "/v1/users/x/./allow"} {
		code, body, _ := ts.do("POST", p, "", "Authorization", "Bearer "+set.Token)
		if msg, _ := body["error"].(string); code != 400 || !strings.Contains(msg, "segment") {
			t.Errorf("POST %s: %d %v", p, code, body)
		}
	}
}

// Row 6: a lease token altered to claim a fail-open lease refreshes and
// releases nothing: 400, and the real lease stays held.
func TestAlteredLeaseToken(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	_, body, _ := ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"a"}`)
	token, _ := body["token"].(string)
	if !strings.HasPrefix(token, "r.") {
		t.Fatalf("token %q", token)
	}
	forged := "o." + token[2:]
	for _, op := range []string{"refresh", "release"} {
		code, body, _ := ts.do("POST", "/v1/slots/gpu/"+op, `{"token":"`+forged+`"}`)
		if code != 400 || !strings.Contains(fmt.Sprint(body["error"]), "fail-open") {
			t.Errorf("%s with %q: %d %v", op, forged, code, body)
		}
	}
	if _, body, _ := ts.do("GET", "/v1/slots/gpu", ""); body["in_use"] != 1.0 {
		t.Fatalf("pool after the forged calls: %v", body)
	}
}

// Row 7 and row 10's JSON: strings that are not valid Unicode, keys in
// another case and keys given twice are refused, naming what is wrong.
func TestStrictBodies(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	for _, tc := range []struct{ path, body, want string }{
		{"/v1/allow-many", "{\"users\":[\"ok\",\"bad\xff\"]}", `"bad\xff" at byte 15`},
		{"/v1/allow-many", `{"users":["bad\ud800"]}`, `bad\\ud800`},
		{"/v1/allow-many", `{"users":["bad\udc00x"]}`, `bad\\udc00x`},
		{"/v1/allow-many", `{"users":["bad\ud800\u0041"]}`, `bad\\ud800`},
		{"/v1/allow-many", `{"Users":["a"]}`, `unknown field "Users"`},
		{"/v1/allow-many", `{"users":["a"],"users":["b"]}`, `"users" given twice`},
		{"/v1/slots/gpu/acquire", `{"holder":"a","HOLDER":"b"}`, `unknown field "HOLDER"`},
	} {
		code, body, _ := ts.do("POST", tc.path, tc.body)
		if msg, _ := body["error"].(string); code != 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %q: %d %v, want 400 with %s", tc.path, tc.body, code, body, tc.want)
		}
	}
	// Valid surrogate pairs and U+FFFD itself are fine.
	code, body, _ := ts.do("POST", "/v1/allow-many", `{"users":["\ud83d\ude00","\ufffd","`+"\uFFFD"+`x"]}`)
	if code != 200 {
		t.Fatalf("valid strings: %d %v", code, body)
	}
}

// Row 8: a token with a control character or non-ASCII bytes is refused
// at startup, with the reason.
func TestTokenBytes(t *testing.T) {
	for _, tok := range []string{"0123456789abcdef\x01", "éééééééé9", "0123456789abcdef 0123"} {
		set := testSettings()
		set.Token = tok
		err := set.validate()
		if err == nil || !strings.Contains(err.Error(), "visible ASCII") {
			t.Errorf("token %q: %v", tok, err)
		}
	}
}

// Row 9: a slow upload is a 408 with a generic message; Redis errors do
// not reach the client.
func TestSlowBodyAndRedisDetails(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	addr := serveTCP(t, ts, testSettings(), func(s *http.Server) { s.ReadTimeout = 300 * time.Millisecond })
	res, body, _ := rawExchange(t, addr, "POST /v1/slots/gpu/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"holder\":")
	if res.StatusCode != 408 || strings.Contains(body, "127.0.0.1") || !strings.Contains(body, "read timeout") {
		t.Fatalf("slow body: %d %s", res.StatusCode, body)
	}

	cfg := testConfig()
	cfg.RedisTimeout = 100 * time.Millisecond
	ts = newTestServer(t, cfg, testSettings())
	redisAddr := ts.mr.Addr()
	ts.mr.Close()
	for _, p := range []string{"/v1/users/alice", "/v1/slots/gpu", "/v1/backoff/llm/endpoints/e", "/readyz"} {
		code, body, _ := ts.do("GET", p, "")
		if msg, _ := body["error"].(string); code != 503 || strings.Contains(msg, cfg.KeyPrefix) || strings.Contains(msg, redisAddr) || strings.Contains(msg, "tcp") {
			t.Errorf("GET %s with Redis down: %d %q", p, code, msg)
		}
	}
}

// Row 10: headers over 16 KiB, a bad %-escape and CONNECT get JSON errors;
// log lines name the route once.
func TestNetHTTPErrorsAreJSON(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	addr := serveTCP(t, ts, testSettings(), nil)
	req := func(header int) string {
		// The request line and headers, CRLFs included, total header bytes.
		head := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
		return head + strings.Repeat("a", header-len(head)-4) + "\r\n\r\n"
	}
	if res, body, _ := rawExchange(t, addr, req(16<<10)); res.StatusCode != 200 {
		t.Fatalf("16 KiB of headers: %d %s", res.StatusCode, body)
	}
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{req(16<<10 + 1), 431},
		{req(20 << 10), 431},
		{"GET /v1/users/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"GET /healthz HTTP/1.1\r\n\r\n", 400}, // no Host
		{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
	} {
		res, body, _ := rawExchange(t, addr, tc.raw)
		if res.StatusCode != tc.status || res.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(body, `{"error":"`) {
			t.Errorf("%.50q: %d %q %s, want %d JSON", tc.raw, res.StatusCode, res.Header.Get("Content-Type"), body, tc.status)
		}
	}
	ts.s.mux.Handle("GET /v1/boom", ts.s.wrap(func(w http.ResponseWriter, r *http.Request) error { panic("kaboom") }))
	ts.do("GET", "/v1/boom", "")
	if log := ts.logs.String(); strings.Contains(log, "GET GET") || !strings.Contains(log, "GET /v1/boom") {
		t.Fatalf("log: %q", log)
	}
}
