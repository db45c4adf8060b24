package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/limiter"
)

func TestListenRules(t *testing.T) {
	ok := testSettings()
	for _, tc := range []struct {
		addr, token string
		want        string // "" means accepted
	}{
		{"127.0.0.1:8080", "", ""},
		{"localhost:0", "", ""},
		{"[::1]:8080", "", ""},
		{"127.0.0.2:8080", "", ""},
		{"0.0.0.0:8080", "", "refusing to listen on 0.0.0.0:8080 without FLOODGATE_HTTP_TOKEN"},
		{":8080", "", "refusing to listen on :8080 without FLOODGATE_HTTP_TOKEN"},
		{"[::]:8080", "", "refusing"},
		{"10.0.0.5:8080", "", "refusing"},
		{"bot.example:8080", "", "refusing"},
		{"0.0.0.0:8080", "0123456789abcdef", ""},
		{"0.0.0.0:8080", "short", "at least 16"},
		{"127.0.0.1:8080", "0123456789abcdef 1", "spaces"},
		{"127.0.0.1", "", "want host:port"},
		{"127.0.0.1:99999", "", "bad port"},
	} {
		s := ok
		s.Addr, s.Token = tc.addr, tc.token
		err := s.validate()
		if (tc.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n"))) {
			t.Errorf("%s token %q: %v, want %q", tc.addr, tc.token, err, tc.want)
		}
	}
}

// The connection bounds docs/sidecar.md promises.
func TestHTTPServerBounds(t *testing.T) {
	set := testSettings()
	srv := newHTTPServer(http.NotFoundHandler(), set, func(string, ...any) {})
	if srv.ReadHeaderTimeout != 5*time.Second || srv.ReadTimeout != 10*time.Second || srv.MaxHeaderBytes != 12<<10 ||
		srv.WriteTimeout <= set.MaxWait || srv.IdleTimeout == 0 {
		t.Fatalf("%+v", srv)
	}
}

// serve sets its GC target unless GOGC is set (the runtime has applied
// GOGC then, and serve leaves it alone).
func TestServeGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	serveGC("50")
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC set, serveGC changed the GC percent to %d", got)
	}
	serveGC("")
	if got := debug.SetGCPercent(100); got != serveGCPercent {
		t.Fatalf("without GOGC, GC percent %d, want %d", got, serveGCPercent)
	}
}

// serve refuses a non-loopback address without a token before it starts
// anything, with a one-line reason and exit status 2.
func TestServeRefusesOpenAddress(t *testing.T) {
	t.Setenv("FLOODGATE_HTTP_ADDR", "0.0.0.0:0")
	t.Setenv("FLOODGATE_HTTP_TOKEN", "")
	t.Setenv("FLOODGATE_REDIS_URL", "redis://127.0.0.1:1")
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{"serve"}, &out, &errOut)
	if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "refusing to listen on 0.0.0.0:0 without FLOODGATE_HTTP_TOKEN") {
		t.Fatalf("serve on 0.0.0.0 without a token: %v", err)
	}
	for _, bad := range []map[string]string{
		{"FLOODGATE_HTTP_MAX_WAIT": "forever"},
		{"FLOODGATE_HTTP_MAX_WAITS": "many"},
		{"FLOODGATE_HTTP_MAX_WAITS": "0"},
		{"FLOODGATE_HTTP_SHUTDOWN_TIMEOUT": "2h"},
	} {
		t.Setenv("FLOODGATE_HTTP_ADDR", "127.0.0.1:0")
		for k, v := range bad {
			t.Setenv(k, v)
		}
		err := Run(context.Background(), []string{"serve"}, &out, &errOut)
		if err == nil || cli.ExitCode(err) != 2 {
			t.Errorf("%v: %v", bad, err)
		}
		for k := range bad {
			t.Setenv(k, "")
		}
	}
}

// Shutdown: a wait in flight completes (with its current answer), the
// server stops within the bound, and new connections are refused.
func TestGracefulShutdown(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	lim, err := limiter.New(rdb, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	set := testSettings()
	set.MaxWait = 20 * time.Second
	set.ShutdownTimeout = 5 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &logBuffer{}
	go func() { done <- serveOn(ctx, ln, lim, rdb, set, prometheus.NewRegistry(), logs.logf, nil) }()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	post := func(path, body string) (*http.Response, error) {
		return client.Post(base+path, "application/json", strings.NewReader(body))
	}
	// wikipedia: 1/s, burst 1. Take the token, then wait for the next.
	for {
		resp, err := post("/v1/buckets/wikipedia/allow", "")
		if err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	type answer struct {
		status int
		body   map[string]any
		err    error
	}
	inflight := make(chan answer, 1)
	go func() {
		// Allowed after ~1 s unless shutdown ends the wait first.
		resp, err := post("/v1/buckets/wikipedia/wait", `{"timeout_ms":5000}`)
		if err != nil {
			inflight <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		data, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(data, &m)
		inflight <- answer{status: resp.StatusCode, body: m}
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	a := <-inflight
	if a.err != nil || a.status != 200 || a.body["allowed"] != false || a.body["reason"] != "rate" {
		t.Fatalf("in-flight wait at shutdown: %+v", a)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("shutdown took %v with one wait in flight", took)
	}
	if resp, err := (&http.Client{Timeout: time.Second}).Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("a new request after shutdown got %d", resp.StatusCode)
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Fatalf("log: %s", logs.String())
	}
}
