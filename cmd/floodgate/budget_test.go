package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// budgetServer serves the budget "llm" with 20,000 units an hour, on a
// miniredis clock set at 12:00.
func budgetServer(t *testing.T, tweak func(*limiter.Config)) *testServer {
	t.Helper()
	cfg := testConfig()
	cfg.UserTokenBudget = 20000
	if tweak != nil {
		tweak(&cfg)
	}
	ts := newTestServer(t, cfg, testSettings())
	ts.mr.SetTime(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	return ts
}

const budgetPath = "/v1/budgets/llm/users/viewer"

// The README's worked example through the routes: reserve 1,500, settle
// at 900, charge, a denial with its retry, cancel, peek.
func TestBudgetRoutes(t *testing.T) {
	ts := budgetServer(t, nil)
	code, d, hdr := ts.do("POST", budgetPath+"/reserve", `{"units":1500}`)
	tok, _ := d["reservation"].(string)
	if code != 200 || d["allowed"] != true || d["remaining"] != 18500.0 || d["reason"] != "none" || tok == "" {
		t.Fatalf("reserve: %d %v", code, d)
	}
	if p, r := hdr.Get("RateLimit-Policy"), hdr.Get("RateLimit"); p != `"budget";q=20000;w=3600` || r != `"budget";r=18500;t=3600` {
		t.Fatalf("reserve headers: RateLimit-Policy %q, RateLimit %q", p, r)
	}
	peek := func(spent, reserved, remaining float64) {
		t.Helper()
		code, st, _ := ts.do("GET", budgetPath, "")
		if code != 200 || st["spent"] != spent || st["reserved"] != reserved || st["remaining"] != remaining ||
			st["budget"] != "llm" || st["user"] != "viewer" || st["limit"] != 20000.0 || st["window_ms"] != 3600000.0 {
			t.Fatalf("peek: %d %v, want spent %v reserved %v remaining %v", code, st, spent, reserved, remaining)
		}
	}
	peek(0, 1500, 18500)
	if code, body, _ := ts.do("POST", budgetPath+"/settle", fmt.Sprintf(`{"reservation":%q,"units":900}`, tok)); code != 204 || body != nil {
		t.Fatalf("settle: %d %v", code, body)
	}
	peek(900, 0, 19100)
	// A settled reservation is stale for settle and cancel alike: 409
	// naming it, nothing changed.
	for _, op := range []string{`"units":900`, ``} {
		path, body := budgetPath+"/settle", fmt.Sprintf(`{"reservation":%q,%s}`, tok, op)
		if op == "" {
			path, body = budgetPath+"/cancel", fmt.Sprintf(`{"reservation":%q}`, tok)
		}
		code, e, _ := ts.do("POST", path, body)
		if msg, _ := e["error"].(string); code != 409 || !strings.Contains(msg, tok) || !strings.Contains(msg, "settled or cancelled already") {
			t.Fatalf("%s again: %d %v", path, code, e)
		}
	}
	// Another user's token is stale too.
	if code, e, _ := ts.do("POST", "/v1/budgets/llm/users/other/settle", fmt.Sprintf(`{"reservation":%q,"units":1}`, tok)); code != 409 {
		t.Fatalf("foreign settle: %d %v", code, e)
	}
	peek(900, 0, 19100)

	ts.mr.SetTime(time.Date(2026, 12, 6, 12, 40, 0, 0, time.UTC))
	code, d, _ = ts.do("POST", budgetPath+"/charge", `{"units":18100}`)
	if code != 200 || d["allowed"] != true || d["remaining"] != 1000.0 || d["reservation"] != nil {
		t.Fatalf("charge: %d %v", code, d)
	}
	code, d, hdr = ts.do("POST", budgetPath+"/reserve", `{"units":1500}`)
	if code != 200 || d["allowed"] != false || d["reason"] != "budget" || d["remaining"] != 1000.0 ||
		d["retry_after_ms"] != 1200000.0 || d["reservation"] != nil || hdr.Get("Retry-After") != "1200" || hdr.Get("RateLimit") != `"budget";r=0;t=1200` {
		t.Fatalf("denied reserve: %d %v %v", code, d, hdr)
	}
	peek(19000, 0, 1000)
	if _, st, _ := ts.do("GET", budgetPath, ""); st["oldest_ages_out_ms"] != 1200000.0 || st["reset_after_ms"] != 3600000.0 || st["reservations"] != 0.0 {
		t.Fatalf("peek at 12:40: %v, want the 900 of 12:00 to age out in 20m and the window empty in 1h", st)
	}
	code, d, _ = ts.do("POST", budgetPath+"/reserve", `{"units":1000}`)
	tok, _ = d["reservation"].(string)
	if code != 200 || d["allowed"] != true || d["remaining"] != 0.0 || tok == "" {
		t.Fatalf("reserve what is left: %d %v", code, d)
	}
	if code, body, _ := ts.do("POST", budgetPath+"/cancel", fmt.Sprintf(`{"reservation":%q}`, tok)); code != 204 {
		t.Fatalf("cancel: %d %v", code, body)
	}
	peek(19000, 0, 1000)
	// At 13:00 the 900 of 12:00 ages out.
	ts.mr.SetTime(time.Date(2026, 12, 6, 13, 0, 0, 1e6, time.UTC))
	if code, d, _ := ts.do("POST", budgetPath+"/reserve", `{"units":1500}`); code != 200 || d["allowed"] != true || d["remaining"] != 400.0 {
		t.Fatalf("reserve at 13:00: %d %v", code, d)
	}
	m := metricsText(t, ts)
	for _, want := range []string{
		`floodgate_budget_units_total{budget="llm",outcome="spent"} 19000`,
		`floodgate_budget_units_total{budget="llm",outcome="denied"} 1500`,
		`floodgate_decisions_total{allowed="false",policy="budget",reason="budget"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %s:\n%s", want, m)
		}
	}
}

// Bad input is a 400 naming what is wrong, and changes nothing.
func TestBudgetBadInput(t *testing.T) {
	ts := budgetServer(t, nil)
	_, d, _ := ts.do("POST", budgetPath+"/reserve", `{"units":100}`)
	tok := d["reservation"].(string)
	for _, c := range []struct{ path, body, want string }{
		{"/reserve", ``, "want a JSON object"},
		{"/reserve", `{}`, "units: missing"},
		{"/reserve", `{"units":0}`, "estimate must be between 1 and the limit 20000, got 0"},
		{"/reserve", `{"units":-5}`, "got -5"},
		{"/reserve", `{"units":20001}`, "got 20001"},
		{"/reserve", `{"units":1e99}`, `"units" must be a whole number`},
		{"/reserve", `{"units":"100"}`, `"units" must be a whole number`},
		{"/reserve", `{"units":1,"reservation":"x"}`, `unknown field "reservation"`},
		{"/charge", `{"units":0}`, "charge must be between 1"},
		{"/charge", `{"n":5}`, `unknown field "n"`},
		{"/settle", `{"units":5}`, "reservation: missing"},
		{"/settle", fmt.Sprintf(`{"reservation":%q}`, tok), "units: missing"},
		{"/settle", fmt.Sprintf(`{"reservation":%q,"units":-1}`, tok), "actual must be between 0"},
		{"/settle", `{"reservation":"abc","units":5}`, `"abc" is not a reservation token`},
		{"/settle", fmt.Sprintf(`{"reservation":%q,"units":5}`, strings.Repeat("a", 1025)), "reservation: 1025 bytes, at most 1024"},
		{"/cancel", fmt.Sprintf(`{"reservation":%q,"units":5}`, tok), "units: a cancel takes none"},
		{"/cancel", `{}`, "reservation: missing"},
	} {
		code, e, _ := ts.do("POST", budgetPath+c.path, c.body)
		if msg, _ := e["error"].(string); code != 400 || !strings.Contains(msg, c.want) {
			t.Errorf("%s %s: %d %v, want 400 with %q", c.path, c.body, code, e, c.want)
		}
	}
	if code, st, _ := ts.do("GET", budgetPath, ""); code != 200 || st["reserved"] != 100.0 || st["spent"] != 0.0 || st["reservations"] != 1.0 {
		t.Fatalf("after bad input: %d %v", code, st)
	}
	if code, _, hdr := ts.do("GET", budgetPath+"/settle", ""); code != 405 || hdr.Get("Allow") != "POST" {
		t.Fatalf("GET settle: %d %v", code, hdr)
	}
}

// Only the configured budget is served: another name, or any name when
// FLOODGATE_USER_TOKEN_BUDGET is 0, is a 404 naming the setting.
func TestBudgetUnknown(t *testing.T) {
	ts := budgetServer(t, nil)
	for _, path := range []string{"/v1/budgets/lm/users/viewer/reserve", "/v1/budgets/LLM/users/viewer"} {
		method := "POST"
		if !strings.HasSuffix(path, "reserve") {
			method = "GET"
		}
		code, e, _ := ts.do(method, path, `{"units":1}`)
		if msg, _ := e["error"].(string); code != 404 || !strings.Contains(msg, `one budget, "llm" (FLOODGATE_USER_TOKEN_BUDGET)`) {
			t.Fatalf("%s: %d %v", path, code, e)
		}
	}
	off := newTestServer(t, testConfig(), testSettings())
	code, e, _ := off.do("POST", budgetPath+"/reserve", `{"units":1}`)
	if msg, _ := e["error"].(string); code != 404 || !strings.Contains(msg, "set FLOODGATE_USER_TOKEN_BUDGET") {
		t.Fatalf("no budget: %d %v", code, e)
	}
}

// With Redis down a reserve follows FLOODGATE_BUDGET_ON_REDIS_ERROR (here
// closed: a 503 decision) and a peek or settle is a 503.
func TestBudgetRedisDown(t *testing.T) {
	ts := budgetServer(t, func(c *limiter.Config) {
		c.BudgetOnRedisError = limiter.FailClosed
		c.RedisTimeout = 100 * time.Millisecond
	})
	_, d, _ := ts.do("POST", budgetPath+"/reserve", `{"units":100}`)
	tok := d["reservation"].(string)
	ts.mr.Close()
	code, d, hdr := ts.do("POST", budgetPath+"/reserve", `{"units":100}`)
	if code != 503 || d["allowed"] != false || d["reason"] != "redis_down" || d["degraded"] != true || hdr.Get("Retry-After") == "" {
		t.Fatalf("reserve, Redis down: %d %v", code, d)
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", budgetPath, ""},
		{"POST", budgetPath + "/settle", fmt.Sprintf(`{"reservation":%q,"units":90}`, tok)},
	} {
		if code, e, _ := ts.do(c.method, c.path, c.body); code != 503 {
			t.Fatalf("%s %s, Redis down: %d %v", c.method, c.path, code, e)
		}
	}
}

// Failing open, a reserve is allowed with a reservation that holds
// nothing (settling it does nothing) and no RateLimit count.
func TestBudgetFailOpen(t *testing.T) {
	ts := budgetServer(t, func(c *limiter.Config) {
		c.BudgetOnRedisError = limiter.FailOpen
		c.RedisTimeout = 100 * time.Millisecond
	})
	ts.mr.Close()
	code, d, hdr := ts.do("POST", budgetPath+"/reserve", `{"units":100}`)
	tok, _ := d["reservation"].(string)
	if code != 200 || d["allowed"] != true || d["degraded"] != true || tok == "" || hdr.Get("RateLimit") != "" || hdr.Get("RateLimit-Policy") == "" {
		t.Fatalf("reserve failing open: %d %v %v", code, d, hdr)
	}
	if code, e, _ := ts.do("POST", budgetPath+"/settle", fmt.Sprintf(`{"reservation":%q,"units":90}`, tok)); code != 204 {
		t.Fatalf("settle of an open reservation: %d %v", code, e)
	}
}

func TestBudgetCommand(t *testing.T) {
	ts := budgetServer(t, nil)
	t.Setenv("FLOODGATE_REDIS_URL", "redis://"+ts.mr.Addr())
	t.Setenv("FLOODGATE_USER_TOKEN_BUDGET", "20000")
	ts.do("POST", budgetPath+"/charge", `{"units":900}`)
	ts.do("POST", budgetPath+"/reserve", `{"units":1500}`)
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), args, &out, &errOut)
		return out.String(), err
	}
	out, err := run("budget", "llm", "viewer")
	if err != nil || !strings.Contains(out, `user "viewer" in budget "llm": 17600 of 20000 units left per 1h0m0s`) ||
		!strings.Contains(out, "spent            900") || !strings.Contains(out, "reserved         1500 (1 reservations in flight)") {
		t.Fatalf("budget: %v\n%s", err, out)
	}
	out, err = run("budget", "--json", "llm", "viewer")
	var st budgetBody
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Spent != 900 || st.Reserved != 1500 || st.Remaining != 17600 || st.ResetAfterMs != 3600000 {
		t.Fatalf("budget --json: %v %+v\n%s", err, st, out)
	}
	if _, err := run("budget", "llm"); err == nil || !strings.Contains(err.Error(), "budget takes a budget NAME and a USER") {
		t.Fatalf("one argument: %v", err)
	}
	t.Setenv("FLOODGATE_USER_TOKEN_BUDGET", "0")
	if _, err := run("budget", "llm", "viewer"); err == nil || !strings.Contains(err.Error(), "FLOODGATE_USER_TOKEN_BUDGET") {
		t.Fatalf("no budget set: %v", err)
	}
}
