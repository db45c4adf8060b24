package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Every route's bad input: the status and a JSON error naming the
// problem.
func TestBadInput(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	long := strings.Repeat("x", 257)
	longName := strings.Repeat("n", 513)
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/users/" + long + "/allow", "", 400, "invalid user id"},
		{"GET", "/v1/users/" + long, "", 400, "invalid user id"},
		{"DELETE", "/v1/users/" + long, "", 400, "invalid user id"},
		{"POST", "/v1/users//allow", "", 400, "empty"},
		{"GET", "/v1/users/..", "", 400, "segment"},
		{"GET", "/v1/users/a/../b", "", 400, "segment"},
		{"PUT", "/v1/users/alice/allow", "", 405, "not allowed"},
		{"GET", "/v1/users/alice/allow", "", 405, "not allowed"},
		{"POST", "/v1/users/alice", "", 405, "not allowed"},
		{"GET", "/v1/nothing", "", 404, "no such route"},
		{"GET", "/", "", 404, "no such route"},
		{"POST", "/v1/users/alice/allow/", "", 404, "no such route"},

		{"POST", "/v1/backoff/llm/pick", "", 400, "want a JSON object"},
		{"POST", "/v1/backoff/llm/pick", `{"endpoints":[]}`, 400, "non-empty"},
		{"POST", "/v1/backoff/llm/pick", `{"endpoints":"a"}`, 400, `"endpoints" must be an array`},
		{"POST", "/v1/backoff/llm/pick", `{"endpoints":["a",""]}`, 400, "empty"},
		{"POST", "/v1/backoff/llm/pick", `{"endpoints":["a"]} x`, 400, "more data"},
		{"POST", "/v1/backoff/llm/pick", `{"endpoints":["a"]`, 400, "malformed JSON"},
		{"POST", "/v1/backoff/llm/pick", `{"endpoint":["a"]}`, 400, `unknown field "endpoint"`},
		{"POST", "/v1/backoff/llm/pick", `[1]`, 400, "want a JSON object"},
		{"POST", "/v1/backoff/llm/pick", `{"endpoints":[` + strings.Repeat(`"a",`, 64) + `"a"]}`, 400, "at most 64"},
		{"POST", "/v1/backoff/" + longName + "/pick", `{"endpoints":["a"]}`, 400, "invalid name"},
		{"POST", "/v1/backoff/%FF/endpoints/a/check", "", 400, "not UTF-8"},
		{"POST", "/v1/backoff/llm/endpoints/" + longName + "/check", "", 400, "invalid name"},
		{"POST", "/v1/backoff/llm/endpoints/" + longName + "/failure", "", 400, "invalid name"},
		{"POST", "/v1/backoff/llm/endpoints/" + longName + "/success", "", 400, "invalid name"},
		{"GET", "/v1/backoff/llm/endpoints/" + longName, "", 400, "invalid name"},
		{"POST", "/v1/backoff/llm/endpoints/a/abandon", "", 400, "want a JSON object"},
		{"POST", "/v1/backoff/llm/endpoints/a/abandon", `{}`, 400, "token: missing"},
		{"POST", "/v1/backoff/llm/endpoints/a/abandon", `{"token":1}`, 400, `"token" must be a string`},
		{"GET", "/v1/backoff/llm/endpoints/a/check", "", 405, "not allowed"},

		{"POST", "/v1/buckets/nope/allow", "", 400, "configured: [igdb, wikipedia]"},
		{"POST", "/v1/buckets/nope/wait", "", 400, "configured"},
		{"POST", "/v1/buckets/igdb/allow", `{"n":-1}`, 400, "n must be at least 1"},
		{"POST", "/v1/buckets/igdb/allow", `{"n":3}`, 400, "invalid argument"},
		{"POST", "/v1/buckets/igdb/allow", `{"n":1.5}`, 400, `"n" must be a whole number`},
		{"POST", "/v1/buckets/igdb/allow", `{"n":1e30}`, 400, `"n" must be a whole number`},
		{"POST", "/v1/buckets/igdb/allow", `{"n":"1"}`, 400, `"n" must be a whole number`},
		{"POST", "/v1/buckets/igdb/allow", `{"timeout_ms":5}`, 400, "allow never waits"},
		{"POST", "/v1/buckets/igdb/wait", `{"timeout_ms":-1}`, 400, "timeout_ms must be 0"},
		{"POST", "/v1/buckets/igdb/wait", `{"n":0,"timeout_ms":true}`, 400, `"timeout_ms" must be a whole number`},
		{"POST", "/v1/buckets/igdb/wait", `{"n":99}`, 400, "invalid argument"},
		{"GET", "/v1/buckets/igdb/allow", "", 405, "not allowed"},

		{"POST", "/v1/slots/gpu/acquire", "", 400, "want a JSON object"},
		{"POST", "/v1/slots/gpu/acquire", `{}`, 400, "holder: missing"},
		{"POST", "/v1/slots/gpu/acquire", `{"holder":"` + long + `"}`, 400, "holder: 257 bytes"},
		{"POST", "/v1/slots/gpu/acquire", `{"holder":"a","wait":"yes"}`, 400, `"wait" must be true or false`},
		{"POST", "/v1/slots/gpu/acquire", `{"holder":"a","wait":true,"timeout_ms":-5}`, 400, "timeout_ms must be 0"},
		{"POST", "/v1/slots/" + longName + "/acquire", `{"holder":"a"}`, 400, "invalid name"},
		{"POST", "/v1/slots/gpu/refresh", `{}`, 400, "token: missing"},
		{"POST", "/v1/slots/gpu/release", ``, 400, "want a JSON object"},
		{"POST", "/v1/slots/gpu/release", `{"token":"` + strings.Repeat("t", 1025) + `"}`, 400, "token: 1025 bytes"},
		{"GET", "/v1/slots/" + longName, "", 400, "invalid name"},
		{"DELETE", "/v1/slots/gpu", "", 405, "not allowed"},

		{"POST", "/healthz", "", 405, "not allowed"},
		{"POST", "/readyz", "", 405, "not allowed"},
	} {
		code, body, _ := ts.do(tc.method, tc.path, tc.body)
		msg, _ := body["error"].(string)
		if code != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s %q: %d %q, want %d with %q", tc.method, tc.path, tc.body, code, msg, tc.status, tc.want)
		}
	}
	// Nothing was counted or created by bad input but what the table
	// allowed on purpose.
	if keys := ts.mr.Keys(); len(keys) != 0 {
		t.Errorf("bad input wrote keys: %q", keys)
	}
}

// A body over 64 KiB is a 413 on every route that reads one.
func TestBodyLimit(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	big := `{"endpoints":["` + strings.Repeat("a", maxBody) + `"]}`
	for _, path := range []string{
		"/v1/backoff/llm/pick", "/v1/backoff/llm/endpoints/a/abandon", "/v1/buckets/igdb/allow",
		"/v1/buckets/igdb/wait", "/v1/slots/gpu/acquire", "/v1/slots/gpu/refresh", "/v1/slots/gpu/release",
	} {
		code, body, _ := ts.do("POST", path, big)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(body["error"].(string), "larger than 65536 bytes") {
			t.Errorf("%s: %d %v, want 413", path, code, body)
		}
	}
}

// FuzzDecodeRequest: any body, on any route that reads one, is either a
// request whose normalized fields are in range or a 400/413 naming the
// problem; decoding never panics, and what decodes re-encodes to a body
// that decodes to the same request.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"n":1}`, `{"n":2,"timeout_ms":1000}`, `{"endpoints":["a","b"]}`, `{"token":"x"}`,
		`{"holder":"u","wait":true,"timeout_ms":5}`, `{"n":-1}`, `{"n":1e99}`, `[`, `{"n":1}{}`, `null`,
		`{"endpoints":null}`, `{"users":["a","b"]}`, `{"holder":"\u0000"}`, `{"timeout_ms":9223372036854775807}`, "\xff",
		`{"units":1500}`, `{"reservation":"0.1500.9f86d081884c7d65","units":900}`, `{"units":null}`, `{"reservation":""}`,
	} {
		f.Add([]byte(s))
	}
	const maxWait = 30 * time.Second
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, err error) {
			if err == nil {
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || (ae.status != http.StatusBadRequest && ae.status != http.StatusRequestEntityTooLarge) || ae.msg == "" || strings.Contains(ae.msg, "\n") {
				t.Fatalf("%s: %q gave %v", what, data, err)
			}
		}
		inRange := func(ms int64) bool { w := waitFor(ms, maxWait); return w > 0 && w <= maxWait }
		var (
			b      bucketRequest
			a      acquireRequest
			p      pickRequest
			m      manyRequest
			tk     tokenRequest
			u      unitsRequest
			settle settleRequest
			cancel cancelRequest
		)
		for _, tc := range []struct {
			name string
			req  request
			ok   func() bool // the fields are in range after normalize
		}{
			{"bucket", &b, func() bool { return b.N >= 1 && inRange(b.TimeoutMs) }},
			{"acquire", &a, func() bool { return a.Holder != "" && len(a.Holder) <= 256 && inRange(a.TimeoutMs) }},
			{"pick", &p, func() bool { return len(p.Endpoints) > 0 && len(p.Endpoints) <= maxEndpoints }},
			{"many", &m, func() bool { return len(m.Users) > 0 && len(m.Users) <= maxManyUsers }},
			{"token", &tk, func() bool { return tk.Token != "" && len(tk.Token) <= maxTokenLen }},
			{"units", &u, func() bool { return u.Units != nil }},
			{"settle", &settle, func() bool {
				return settle.Reservation != "" && len(settle.Reservation) <= maxTokenLen && settle.Units != nil
			}},
			{"cancel", &cancel, func() bool {
				return cancel.Reservation != "" && len(cancel.Reservation) <= maxTokenLen && cancel.Units == nil
			}},
		} {
			_, optional := tc.req.(*bucketRequest)
			err := decodeJSON(data, tc.req, !optional)
			if err == nil {
				err = tc.req.normalize()
			}
			switch {
			case err != nil:
				check(tc.name, err)
			case !tc.ok():
				t.Fatalf("%s %q: %+v", tc.name, data, tc.req)
			default:
				roundTrip(t, data, tc.req)
			}
		}
		// Through the body limit as the server reads it.
		req := httptest.NewRequest("POST", "/", strings.NewReader(string(data)))
		req.Body = http.MaxBytesReader(httptest.NewRecorder(), req.Body, 16)
		check("limited", readRequest(req, &bucketRequest{}))
	})
}

// roundTrip re-encodes a decoded request and decodes it again.
func roundTrip(t *testing.T, data []byte, v request) {
	t.Helper()
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%q: re-encoding %+v: %v", data, v, err)
	}
	again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
	if err := decodeJSON(enc, again, true); err != nil {
		t.Fatalf("%q: %s does not decode again: %v", data, enc, err)
	}
	if a, b := string(enc), mustJSON(t, again); a != b {
		t.Fatalf("%q: %s decodes to %s", data, a, b)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAuth(t *testing.T) {
	set := testSettings()
	set.Token = "0123456789abcdef0123"
	ts := newTestServer(t, testConfig(), set)
	// Percent-encoded paths route like plain ones, so they need the token too.
	for _, path := range []string{"/v1/users/alice", "/metrics", "/v1/nothing", "/v1/users//allow",
		"/%761/users/alice", "/%6detrics", "/v1%2Fusers/alice", "/nothing"} {
		for _, hdr := range [][]string{
			nil,
			{"Authorization", "Bearer wrong"},
			{"Authorization", "Bearer " + set.Token + "x"},
			{"Authorization", "Bearer " + set.Token[:len(set.Token)-1]},
			{"Authorization", "Basic " + set.Token},
			{"Authorization", set.Token},
		} {
			code, body, h := ts.do("GET", path, "", hdr...)
			if code != 401 || !strings.Contains(body["error"].(string), "bearer token") || h.Get("WWW-Authenticate") != `Bearer realm="floodgate"` {
				t.Errorf("GET %s with %v: %d %v, want 401", path, hdr, code, body)
			}
		}
	}
	auth := []string{"Authorization", "Bearer " + set.Token}
	if code, body, _ := ts.do("GET", "/v1/users/alice", "", auth...); code != 200 {
		t.Fatalf("with the token: %d %v", code, body)
	}
	if code, body, _ := ts.do("GET", "/v1/users/alice", "", "Authorization", "bearer  "+set.Token); code != 200 {
		t.Fatalf("with the scheme in lower case: %d %v", code, body)
	}
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set(auth[0], auth[1])
	w := httptest.NewRecorder()
	ts.s.ServeHTTP(w, req)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "floodgate_http_requests_total") {
		t.Fatalf("/metrics with the token: %d", w.Code)
	}
	// Health and readiness stay open, for load balancers.
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _, _ := ts.do("GET", p, ""); code != 200 {
			t.Fatalf("%s without a token: %d", p, code)
		}
	}
	if strings.Contains(ts.logs.String(), set.Token) {
		t.Fatal("the token reached the log")
	}
}

// More waits than FLOODGATE_HTTP_MAX_WAITS at once: the extra ones get
// 429 with a JSON error and Retry-After, at once.
func TestWaitCap(t *testing.T) {
	set := testSettings()
	set.MaxWaits = 2
	ts := newTestServer(t, testConfig(), set)
	// Hold both places as two waits would.
	req := httptest.NewRequest("POST", "/", nil)
	_, rel1, err := ts.s.startWait(req, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, rel2, err := ts.s.startWait(req, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range [][2]string{{"/v1/buckets/igdb/wait", `{}`}, {"/v1/slots/gpu/acquire", `{"holder":"a","wait":true}`}} {
		code, body, hdr := ts.do("POST", rt[0], rt[1])
		if code != 429 || !strings.Contains(body["error"].(string), "too many requests waiting (2") || hdr.Get("Retry-After") != "1" {
			t.Errorf("%s at the cap: %d %v, Retry-After %q", rt[0], code, body, hdr.Get("Retry-After"))
		}
	}
	// A try (no wait) is not capped.
	if code, body, _ := ts.do("POST", "/v1/slots/gpu/acquire", `{"holder":"a"}`); code != 200 || body["acquired"] != true {
		t.Errorf("try at the cap: %d %v", code, body)
	}
	rel1()
	rel2()
	if code, body, _ := ts.do("POST", "/v1/buckets/igdb/wait", `{}`); code != 200 || body["allowed"] != true {
		t.Errorf("wait after release: %d %v", code, body)
	}
}

// A panic in a route is a 500 JSON answer and one log line, no stack.
func TestPanicRecovered(t *testing.T) {
	ts := newTestServer(t, testConfig(), testSettings())
	ts.s.mux.Handle("GET /v1/boom", ts.s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		panic("kaboom")
	}))
	code, body, _ := ts.do("GET", "/v1/boom", "")
	if code != 500 || body["error"] != "internal error" {
		t.Fatalf("panic: %d %v", code, body)
	}
	if log := ts.logs.String(); !strings.Contains(log, "kaboom") || strings.Contains(log, "goroutine") || strings.Count(log, "\n") != 0 {
		t.Fatalf("log: %q", log)
	}
}
