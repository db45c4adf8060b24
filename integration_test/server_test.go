package integration_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// httpClient keeps up to n connections alive to one server.
func httpClient(n int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
}

// hammerResult counts, per user, the requests allowed.
type hammerResult struct {
	mu       sync.Mutex
	allowed  map[string]int
	degraded atomic.Int64
	errs     []string
}

func newHammerResult() *hammerResult { return &hammerResult{allowed: map[string]int{}} }

func (h *hammerResult) add(user string, allowed, degraded bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if len(h.errs) < 5 {
			h.errs = append(h.errs, err.Error())
		}
		return
	}
	if degraded {
		h.degraded.Add(1)
	}
	if allowed {
		h.allowed[user]++
	}
}

// decider decides one request for user: through a server or a Limiter.
type decider func(user string) (allowed, degraded bool, err error)

// hammerExactly20 makes attempts requests for each of 50 users through
// every decider at once, 32 goroutines each, and checks that every user
// was allowed exactly 20 times in total (checkExactly20).
func hammerExactly20(t *testing.T, attempts int, deciders ...decider) {
	t.Helper()
	users := users50()
	res := newHammerResult()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, decide := range deciders {
		hammer(&wg, start, users, attempts, 32, res, decide)
	}
	close(start)
	wg.Wait()
	checkExactly20(t, res, users)
}

// hammer makes attempts requests for every user from g goroutines,
// starting when go_ closes.
func hammer(wg *sync.WaitGroup, go_ <-chan struct{}, users []string, attempts, g int, res *hammerResult, decide decider) {
	jobs := make(chan string, len(users)*attempts)
	for a := 0; a < attempts; a++ {
		for _, u := range users {
			jobs <- u
		}
	}
	close(jobs)
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-go_
			for u := range jobs {
				allowed, degraded, err := decide(u)
				res.add(u, allowed, degraded, err)
			}
		}()
	}
}

// viaServer decides through POST /v1/users/{user}/allow, on a client of
// its own with 32 connections, closed when the test ends.
func viaServer(t testing.TB, base string) decider {
	c := httpClient(32)
	t.Cleanup(c.CloseIdleConnections)
	return func(user string) (bool, bool, error) {
		code, d, err := callJSON(c, "POST", base+"/v1/users/"+user+"/allow", "")
		if err != nil {
			return false, false, err
		}
		if code != 200 {
			return false, false, fmt.Errorf("status %d: %v", code, d)
		}
		return d["allowed"] == true, d["degraded"] == true, nil
	}
}

func users50() []string {
	us := make([]string, 50)
	for i := range us {
		us[i] = fmt.Sprintf("viewer%02d", i)
	}
	return us
}

// checkExactly20 fails unless every user was allowed exactly 20 times
// with no error and no degraded decision.
func checkExactly20(t *testing.T, res *hammerResult, users []string) {
	t.Helper()
	if len(res.errs) > 0 {
		t.Fatalf("errors: %q", res.errs)
	}
	if n := res.degraded.Load(); n > 0 {
		t.Fatalf("%d degraded decisions: Redis was not reached", n)
	}
	for _, u := range users {
		if res.allowed[u] != 20 {
			t.Errorf("user %s: allowed %d times in total, want exactly 20", u, res.allowed[u])
		}
	}
}

// exactEnv: 20 requests per user, no cooldown.
var exactEnv = map[string]string{
	"FLOODGATE_USER_COOLDOWN":              "0",
	"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR": "20",
}

// twoServers starts two `floodgate serve` processes with env, sharing a
// key prefix of their own on the shared Redis (returned): two replicas'
// sidecars. stop stops both (see startServe).
func twoServers(t *testing.T, env map[string]string) (prefix, a, b string, stop func()) {
	t.Helper()
	prefix = uniquePrefix(t, client(t))
	env = maps.Clone(env)
	env["FLOODGATE_KEY_PREFIX"] = prefix
	a, stopA := startServe(t, env)
	b, stopB := startServe(t, env)
	return prefix, a, b, func() { stopA(); stopB() }
}

// Two `floodgate serve` processes on one Redis, 32 goroutines through each,
// 50 users with 30 attempts per user per server: exactly 20 each.
func TestServeTwoServersExactLimit(t *testing.T) {
	_, a, b, stop := twoServers(t, exactEnv)
	hammerExactly20(t, 30, viaServer(t, a), viaServer(t, b))
	stop()
}

// A Go replica using the library directly and two servers, on the same
// users at once: still exactly 20 each.
func TestServeAndLibraryShareLimits(t *testing.T) {
	prefix, a, b, _ := twoServers(t, exactEnv)
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	cfg.UserCooldown = 0
	cfg.MaxRequestsPerUserHour = 20
	lim := newLimiter(t, client(t), cfg)
	ctx := context.Background()
	hammerExactly20(t, 20, viaServer(t, a), viaServer(t, b), func(user string) (bool, bool, error) {
		d, err := lim.Allow(ctx, user)
		return d.Allowed, d.Degraded, err
	})
}

// /readyz is 503 naming Redis while Redis is down, 200 again once it is
// back; decisions meanwhile follow FailLocal (degraded, not errors).
func TestServeReadinessRedisRestart(t *testing.T) {
	needRedisServer(t)
	ctx := context.Background()
	srv, err := redisproc.Start(ctx, redisproc.Options{Args: []string{"--requirepass", "s3cret-pass"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Stop() }()
	url, _ := startServe(t, map[string]string{
		"FLOODGATE_REDIS_URL":     "redis://:s3cret-pass@" + srv.Addr,
		"FLOODGATE_REDIS_TIMEOUT": "200ms",
	})
	c := httpClient(4)
	defer c.CloseIdleConnections()
	poll := func(want int) map[string]any {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, body, err := callJSON(c, "GET", url+"/readyz", "")
			if err == nil && code == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz: %d %v %v, want %d", code, body, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	poll(200)
	srv.Kill()
	body := poll(503)
	msg, _ := body["error"].(string)
	if !strings.HasPrefix(msg, "redis did not answer") || strings.Contains(msg, "s3cret-pass") {
		t.Fatalf("/readyz error while down: %q", msg)
	}
	code, d, err := callJSON(c, "POST", url+"/v1/users/alice/allow", "")
	if err != nil || code != 200 || d["degraded"] != true {
		t.Fatalf("allow while Redis is down: %d %v %v", code, d, err)
	}
	if code, _, _ := callJSON(c, "GET", url+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz while Redis is down: %d", code)
	}
	srv, err = redisproc.Start(ctx, redisproc.Options{Port: srv.Port, Dir: srv.Dir(), Args: []string{"--requirepass", "s3cret-pass"}})
	if err != nil {
		t.Fatal(err)
	}
	poll(200)
}

// SIGTERM with waits in flight: each completes with a 200 answer (the
// wait ends at once, not granted), the process exits 0 within the bound,
// and new connections are refused.
func TestServeGracefulShutdown(t *testing.T) {
	rdb := client(t)
	p := startServeProc(t, map[string]string{
		"FLOODGATE_KEY_PREFIX":            uniquePrefix(t, rdb),
		"FLOODGATE_API_RATES":             "slow=0.1",
		"FLOODGATE_MAX_CONCURRENT_USERS":  "1",
		"FLOODGATE_HTTP_SHUTDOWN_TIMEOUT": "5s",
	})
	c := httpClient(64)
	defer c.CloseIdleConnections()
	if code, d, err := callJSON(c, "POST", p.URL+"/v1/buckets/slow/allow", ""); err != nil || d["allowed"] != true {
		t.Fatalf("take the bucket: %d %v %v", code, d, err)
	}
	if code, d, err := callJSON(c, "POST", p.URL+"/v1/slots/gpu/acquire", `{"holder":"first"}`); err != nil || d["acquired"] != true {
		t.Fatalf("take the slot: %d %v %v", code, d, err)
	}
	type answer struct {
		code int
		body map[string]any
		err  error
	}
	answers := make(chan answer, 20)
	for i := 0; i < 20; i++ {
		path, body := "/v1/buckets/slow/wait", `{"timeout_ms":20000}`
		if i%2 == 1 {
			path, body = "/v1/slots/gpu/acquire", fmt.Sprintf(`{"holder":"w%d","wait":true,"timeout_ms":20000}`, i)
		}
		go func() {
			code, d, err := callJSON(c, "POST", p.URL+path, body)
			answers <- answer{code, d, err}
		}()
	}
	// All 20 are waiting: the 10 slot waiters show in the pool's queue,
	// and the bucket waiters, sent at the same time, get a moment more.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, st, err := callJSON(c, "GET", p.URL+"/v1/slots/gpu", "")
		if err == nil && st["waiting"] == 10.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot waiters never reached 10: %v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		a := <-answers
		if a.err != nil || a.code != 200 || a.body["allowed"] == true || a.body["acquired"] == true {
			t.Errorf("in-flight wait at SIGTERM: %+v", a)
		}
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.Output())
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	if _, _, err := callJSON(httpClient(1), "GET", p.URL+"/healthz", ""); err == nil {
		t.Fatal("a new request after shutdown was answered")
	}
	if out := p.Output(); !strings.Contains(out, "shutting down") || !strings.Contains(out, "stopped") {
		t.Fatalf("output:\n%s", out)
	}
}

// --config reads the bot's rate_limiting: block, the environment wins
// over it, and an unknown key stops the server with an error naming it.
func TestServeConfigFile(t *testing.T) {
	rdb := client(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	yaml := "bot:\n  name: x\nrate_limiting:\n  user_cooldown: 0\n  max_requests_per_user_hour: 3\n  cleanup_interval: 600\n  tmdb_rate_limit: 2.0\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServeProc(t, map[string]string{"FLOODGATE_KEY_PREFIX": uniquePrefix(t, rdb), "FLOODGATE_MAX_REQUESTS_PER_USER_HOUR": "2"}, "--config", file)
	c := httpClient(1)
	defer c.CloseIdleConnections()
	allowed := 0
	for i := 0; i < 5; i++ {
		_, d, err := callJSON(c, "POST", p.URL+"/v1/users/carol/allow", "")
		if err != nil {
			t.Fatal(err)
		}
		if d["allowed"] == true {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("allowed %d of 5, want 2 (the environment's limit over the file's 3)", allowed)
	}
	if code, d, _ := callJSON(c, "POST", p.URL+"/v1/buckets/tmdb/allow", ""); code != 200 || d["allowed"] != true {
		t.Fatalf("the file's tmdb bucket: %d %v", code, d)
	}
	if code, d, _ := callJSON(c, "POST", p.URL+"/v1/buckets/wikipedia/allow", ""); code != 400 {
		t.Fatalf("a default bucket the file replaced: %d %v", code, d)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rate_limiting:\n  user_cooldwn: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(commandBin(t, "floodgate"), "serve", "--config", bad)
	cmd.Env = serveEnv(map[string]string{"FLOODGATE_REDIS_URL": redisURL, "FLOODGATE_HTTP_ADDR": "127.0.0.1:0"}, nil)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "unknown key rate_limiting.user_cooldwn") || strings.Count(strings.TrimSpace(string(out)), "\n") > 12 {
		t.Fatalf("unknown key: %v\n%s", err, out)
	}
}

// Without a Redis URL serve starts its own redis-server and says so on
// stderr; the server works and the redis-server goes with it.
func TestServeEmbeddedRedis(t *testing.T) {
	needRedisServer(t)
	needRedis(t)
	p := startServeProc(t, map[string]string{"FLOODGATE_REDIS_URL": ""})
	out := p.Output()
	if !strings.Contains(out, "WARNING: no FLOODGATE_REDIS_URL or REDIS_URL: started an EMBEDDED redis-server on 127.0.0.1:") {
		t.Fatalf("no warning:\n%s", out)
	}
	c := httpClient(1)
	defer c.CloseIdleConnections()
	if code, d, err := callJSON(c, "POST", p.URL+"/v1/users/dave/allow", ""); err != nil || code != 200 || d["allowed"] != true || d["degraded"] != false {
		t.Fatalf("allow on the embedded Redis: %d %v %v", code, d, err)
	}
	addr := regexp.MustCompile(`EMBEDDED redis-server on (127\.0\.0\.1:\d+)`).FindStringSubmatch(out)[1]
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the embedded redis-server on %s outlived serve", addr)
	}
}

// Slots through two servers: a lease taken on one is refreshed and
// released on the other (tokens cross processes), and no more than the
// pool's size is ever held at once.
func TestServeSlotsAcrossServers(t *testing.T) {
	_, a, b, _ := twoServers(t, map[string]string{"FLOODGATE_MAX_CONCURRENT_USERS": "3"})
	c := httpClient(64)
	defer c.CloseIdleConnections()
	var held, most, granted atomic.Int64
	err := concurrently(32, func(g int) error {
		take, give := a, b
		if g%2 == 1 {
			take, give = b, a
		}
		for i := 0; i < 5; i++ {
			code, d, err := callJSON(c, "POST", take+"/v1/slots/llm/acquire", fmt.Sprintf(`{"holder":"u%d","wait":true,"timeout_ms":10000}`, g))
			if err != nil || code != 200 || d["acquired"] != true {
				return fmt.Errorf("acquire: %d %v %v", code, d, err)
			}
			n := held.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			granted.Add(1)
			tok := fmt.Sprintf(`{"token":%q}`, d["token"])
			if code, d, err := callJSON(c, "POST", give+"/v1/slots/llm/refresh", tok); err != nil || code != 204 {
				return fmt.Errorf("refresh on the other server: %d %v %v", code, d, err)
			}
			held.Add(-1) // before the release: the slot may be granted again at once
			if code, d, err := callJSON(c, "POST", give+"/v1/slots/llm/release", tok); err != nil || code != 204 {
				return fmt.Errorf("release on the other server: %d %v %v", code, d, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if most.Load() > 3 || granted.Load() != 160 {
		t.Fatalf("at most %d held at once (pool of 3), %d granted of 160", most.Load(), granted.Load())
	}
	if _, st, err := callJSON(c, "GET", a+"/v1/slots/llm", ""); err != nil || st["in_use"] != 0.0 || st["waiting"] != 0.0 {
		t.Fatalf("pool after: %v %v", st, err)
	}
}

// The half-open probe through two servers: of 32 concurrent checks after
// the delay, exactly one is the probe; abandoning it on the other server
// hands it on.
func TestServeProbeAcrossServers(t *testing.T) {
	_, a, b, _ := twoServers(t, map[string]string{"FLOODGATE_LLM_RETRY_DELAY": "300ms"})
	c := httpClient(64)
	defer c.CloseIdleConnections()
	if code, d, err := callJSON(c, "POST", a+"/v1/backoff/llm/endpoints/gpu1/failure", ""); err != nil || code != 200 || d["reason"] != "backoff" {
		t.Fatalf("failure: %d %v %v", code, d, err)
	}
	time.Sleep(400 * time.Millisecond)
	var probes, probing atomic.Int64
	var token atomic.Value
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			base := a
			if g%2 == 1 {
				base = b
			}
			code, d, err := callJSON(c, "POST", base+"/v1/backoff/llm/endpoints/gpu1/check", "")
			if err != nil || code != 200 {
				t.Errorf("check: %d %v %v", code, d, err)
				return
			}
			switch {
			case d["probe"] == true:
				probes.Add(1)
				token.Store(d["token"])
			case d["reason"] == "probing":
				probing.Add(1)
			}
		}(g)
	}
	wg.Wait()
	if probes.Load() != 1 || probing.Load() != 31 {
		t.Fatalf("%d probes and %d probing of 32, want 1 and 31", probes.Load(), probing.Load())
	}
	if code, d, err := callJSON(c, "POST", b+"/v1/backoff/llm/endpoints/gpu1/abandon", fmt.Sprintf(`{"token":%q}`, token.Load())); err != nil || code != 204 {
		t.Fatalf("abandon on the other server: %d %v %v", code, d, err)
	}
	if code, d, err := callJSON(c, "POST", a+"/v1/backoff/llm/endpoints/gpu1/check", ""); err != nil || code != 200 || d["probe"] != true {
		t.Fatalf("check after abandon: %d %v %v", code, d, err)
	}
}
