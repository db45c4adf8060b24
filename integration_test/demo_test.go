package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
)

// The chatbot demo (cmd/chatbot-demo) run as a user would: its replicas
// are separate OS processes sharing the test Redis. These tests read the
// replicas' JSON summaries and count for themselves.

// demoSummary is the part of a replica's summary the tests read.
type demoSummary struct {
	Replica  int                   `json:"replica"`
	Messages int                   `json:"messages"`
	Answered int                   `json:"answered"`
	Held     map[string]int        `json:"held"`
	Accepted map[string][][2]int64 `json:"accepted"`
	Kinds    map[string]struct {
		Messages int `json:"messages"`
	} `json:"kinds"`
	Limits struct {
		PerWindow int `json:"per_window"`
	} `json:"limits"`
}

type demoReport struct {
	Replicas []demoSummary `json:"replicas"`
	Checks   []struct {
		Name    string `json:"name"`
		OK      bool   `json:"ok"`
		Skipped bool   `json:"skipped"`
		Line    string `json:"line"`
	} `json:"checks"`
}

// demoRun is what a chatbot-demo test starts from: the built command, a
// key prefix of its own on the shared Redis, a context bounding the run
// (2 minutes), and the replay's size.
type demoRun struct {
	bin, prefix string
	ctx         context.Context
	messages    int
	duration    string
}

// newDemoRun skips under -short and sets up a run of three replicas
// replaying messages over duration.
func newDemoRun(t *testing.T, messages int, duration string) *demoRun {
	t.Helper()
	skipIfShort(t) // -short keeps cmd/chatbot-demo's TestReplica (miniredis)
	rdb := client(t)
	d := &demoRun{bin: commandBin(t, "chatbot-demo"), prefix: uniquePrefix(t, rdb), messages: messages, duration: duration}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	d.ctx = ctx
	return d
}

// command runs the demo with args, in an environment without any
// FLOODGATE_* or DEMO_* of the caller's: the run's prefix, replay and
// limits, then vars (which name the Redis).
func (d *demoRun) command(vars map[string]string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(d.ctx, d.bin, args...)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FLOODGATE_") || strings.HasPrefix(kv, "DEMO_") || strings.HasPrefix(kv, "REDIS_URL=") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env,
		"FLOODGATE_KEY_PREFIX="+d.prefix,
		"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR="+strconv.Itoa(demoLimit),
		"FLOODGATE_USER_COOLDOWN=50ms",
		"FLOODGATE_REDIS_TIMEOUT=5s", // a noisy host must not turn into errors
		"DEMO_REPLICAS=3",
		"DEMO_MESSAGES="+strconv.Itoa(d.messages),
		"DEMO_DURATION="+d.duration,
	)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// demoLimit is the per-user window limit the tests set: low, so that the
// chat's spammer certainly reaches it within the short replay.
const demoLimit = 5

// checkShared counts, across replicas, the requests each user had
// accepted: no user may exceed the one limit they share. It returns the
// largest count.
func checkShared(t *testing.T, sums []demoSummary, messages int) int {
	t.Helper()
	total, worst := 0, 0
	perUser := map[string]int{}
	for _, s := range sums {
		total += s.Messages
		for u, acc := range s.Accepted {
			perUser[u] += len(acc)
		}
		if s.Kinds["spammer"].Messages == 0 {
			t.Errorf("replica %d saw no spammer message: the chat is not split across replicas", s.Replica)
		}
	}
	if total != messages {
		t.Errorf("replicas handled %d messages, want %d", total, messages)
	}
	for u, n := range perUser {
		if n > demoLimit {
			t.Errorf("%s: %d requests accepted across %d replicas, limit %d", u, n, len(sums), demoLimit)
		}
		worst = max(worst, n)
	}
	// The spammer sends ~20 messages a second for the whole replay, far
	// more than the cooldown alone would stop: the shared window must bind.
	if perUser["spam_bot0"] != demoLimit {
		t.Errorf("spam_bot0: %d accepted across replicas, want exactly the limit %d", perUser["spam_bot0"], demoLimit)
	}
	return worst
}

// TestDemoSharedLimits runs the README's one command (the launcher, three
// replica processes) against the test Redis, and checks from the replicas'
// own summaries that no user got past one limit in total.
func TestDemoSharedLimits(t *testing.T) {
	const messages = 300
	run := newDemoRun(t, messages, "3s")
	cmd := run.command(map[string]string{"REDIS_URL": redisURL, "DEMO_OUTPUT": "json"})
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rep demoReport
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &rep); err != nil {
		t.Fatalf("chatbot-demo: %v; report: %v\nstdout: %s\nstderr: %s", runErr, err, tail(stdout.String()), tail(stderr.String()))
	}
	if runErr != nil {
		// It exits 1 when its own checks fail; the counts below say why.
		t.Errorf("chatbot-demo: %v\nstderr: %s", runErr, tail(stderr.String()))
	}
	if len(rep.Replicas) != 3 {
		t.Fatalf("%d replica summaries, want 3", len(rep.Replicas))
	}
	worst := checkShared(t, rep.Replicas, messages)
	for _, s := range rep.Replicas {
		if s.Messages != messages/3 {
			t.Errorf("replica %d handled %d messages, want %d (round-robin)", s.Replica, s.Messages, messages/3)
		}
		if s.Held["error"] != 0 {
			t.Errorf("replica %d: %d limiter errors\n%s", s.Replica, s.Held["error"], stderr.String())
		}
	}
	if len(rep.Checks) != 3 {
		t.Errorf("%d checks, want 3 (user window, slots, wikipedia rate)", len(rep.Checks))
	}
	for _, c := range rep.Checks {
		if !c.OK || c.Skipped {
			t.Errorf("check %s failed or skipped: %s", c.Name, c.Line)
		}
		if c.Name == "user_window" && !strings.Contains(c.Line, fmt.Sprintf("max accepted for any user = %d (limit %d", worst, demoLimit)) {
			t.Errorf("the report's check disagrees with the test's count %d: %s", worst, c.Line)
		}
	}
	if strings.Contains(stderr.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", stderr.String())
	}
}

// tail keeps the end of a long output for a failure message.
func tail(s string) string {
	const n = 4000
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// scrapeSum fetches url and sums the samples of metric whose labels
// contain every one of labels.
func scrapeSum(ctx context.Context, url, metric string, labels ...string) (float64, error) {
	sum, _, err := scrape(ctx, url, metric, labels...)
	return sum, err
}

// scrape is scrapeSum that also counts the matching samples.
func scrape(ctx context.Context, url, metric string, labels ...string) (sum float64, n int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%q: %v", line, err)
		}
		sum += v
		n++
	}
	return sum, n, nil
}

// TestDemoMetrics starts three replicas the way docker-compose.yml does
// (--replica, configured by the environment only, each with its own
// DEMO_METRICS_ADDR) and scrapes replica 1's /metrics during the replay,
// where the decision counters must be moving, and after it, where they
// must count each of its messages once. Without a launcher, the replicas
// pool their summaries in Redis and the last one prints the report, whose
// checks must pass.
func TestDemoMetrics(t *testing.T) {
	const messages = 600
	run := newDemoRun(t, messages, "4s")
	ctx := run.ctx
	start := time.Now().Add(time.Second)
	type replica struct {
		cmd            *exec.Cmd
		url            string
		stdout, stderr redisproc.SyncBuffer
	}
	reps := make([]*replica, 3)
	for i := range reps {
		port, err := redisproc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{url: fmt.Sprintf("http://127.0.0.1:%d/metrics", port)}
		r.cmd = run.command(map[string]string{
			"FLOODGATE_REDIS_URL": redisURL,
			"DEMO_REPLICA_ID":     strconv.Itoa(i + 1),
			"DEMO_METRICS_ADDR":   fmt.Sprintf("127.0.0.1:%d", port),
			"DEMO_LINGER":         "2m", // stopped by SIGTERM below
			"DEMO_RUN_ID":         fmt.Sprintf("t%d", start.UnixMilli()),
			"DEMO_START_AT":       strconv.FormatInt(start.UnixMilli(), 10),
		}, "--replica")
		r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		reps[i] = r
	}
	stopped := false
	stopAll := func() {
		if stopped {
			return
		}
		stopped = true
		for _, r := range reps {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
		}
		for i, r := range reps {
			if err := r.cmd.Wait(); err != nil {
				t.Errorf("replica %d after SIGTERM: %v\n%s", i+1, err, tail(r.stderr.String()))
			}
		}
	}
	defer stopAll()

	user := `policy="user"`
	poll := func(what string, cond func(v float64) bool) float64 {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			v, err := scrapeSum(ctx, reps[0].url, "floodgate_decisions_total", user)
			if err == nil && cond(v) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: last value %v, err %v\n%s", what, v, err, tail(reps[0].stderr.String()))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// During the replay: replica 1's counter is above 0, then grows.
	first := poll("decisions counted", func(v float64) bool { return v > 0 })
	second := poll("decisions keep being counted", func(v float64) bool { return v > first })
	t.Logf("replica 1 decisions during the replay: %v, then %v", first, second)

	// After the replay (round-robin gives replica 1 every third message),
	// the replica keeps serving: one user decision per message.
	mine := float64(messages / 3)
	final := poll("all of replica 1's messages counted", func(v float64) bool { return v >= mine })
	if final != mine {
		t.Errorf("replica 1 counted %v user decisions, want one per message: %v", final, mine)
	}
	allowed, err := scrapeSum(ctx, reps[0].url, "floodgate_decisions_total", user, `allowed="true"`)
	if err != nil {
		t.Fatal(err)
	}
	if allowed == 0 || allowed >= final {
		t.Errorf("replica 1: %v of %v user decisions allowed; want some allowed and some held back", allowed, final)
	}
	trips, err := scrapeSum(ctx, reps[0].url, "floodgate_redis_duration_seconds_count", `op="user_allow"`)
	if err != nil {
		t.Fatal(err)
	}
	if trips == 0 {
		t.Error("replica 1 timed no user_allow round trips")
	}
	// The gauges read from Redis at scrape time: the LLM pool, and each
	// endpoint's three state series, exactly one of them 1.
	for _, g := range []struct {
		metric, label string
		n             int
	}{
		{"floodgate_slots_in_use", `pool="llm"`, 1},
		{"floodgate_endpoint_state", `endpoint="http://localhost:1234"`, 3},
		{"floodgate_endpoint_state", `endpoint="https://api.openai.com"`, 3},
	} {
		v, n, err := scrape(ctx, reps[0].url, g.metric, g.label)
		if err != nil || n != g.n || v < 0 || (g.n == 3 && v != 1) {
			t.Errorf("%s{%s}: %d samples summing to %v, err %v; want %d", g.metric, g.label, n, v, err, g.n)
		}
	}

	// The last replica to finish prints the report for all three.
	var table string
	deadline := time.Now().Add(60 * time.Second)
	for table == "" {
		printed := 0
		for _, r := range reps {
			if out := r.stdout.String(); strings.Contains(out, "wikipedia held to") {
				table = out
				printed++
			}
		}
		if printed > 1 {
			t.Fatalf("%d replicas printed the report, want 1", printed)
		}
		if table == "" && time.Now().After(deadline) {
			t.Fatalf("no replica printed the report\n%s", tail(reps[0].stderr.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("report:\n%s", table)
	for _, want := range []string{
		fmt.Sprintf("Floodgate chatbot demo: %d messages", messages),
		fmt.Sprintf("max accepted for any user = %d (limit %d", demoLimit, demoLimit),
		"max LLM slots held at once across 3 replicas",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if n := strings.Count(table, "✔"); n != 3 || strings.Contains(table, "✘") {
		t.Errorf("report: %d checks passed, want 3 and none failed", n)
	}
	stopAll()
}
