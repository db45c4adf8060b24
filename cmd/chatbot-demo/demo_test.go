package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestReadEnv(t *testing.T) {
	def := demoEnv{Replicas: 3, Seed: 1, Messages: 2000, Duration: 20 * time.Second, Output: "table"}
	steps := []struct {
		name string
		env  map[string]string
		want func(e *demoEnv)
		err  string
	}{
		{name: "defaults", env: nil, want: func(*demoEnv) {}},
		{name: "all set", env: map[string]string{
			"DEMO_REPLICAS": "5", "DEMO_REPLICA_ID": "2", "DEMO_SEED": "42", "DEMO_MESSAGES": "300",
			"DEMO_DURATION": "3s", "DEMO_METRICS_ADDR": ":9100", "DEMO_LINGER": "1h", "DEMO_LOG_FORMAT": "TEXT",
			"DEMO_LOG_LEVEL": "debug", "DEMO_OUTPUT": "json", "DEMO_RUN_ID": "abc123", "DEMO_START_AT": "1700000000000",
		}, want: func(e *demoEnv) {
			e.Replicas, e.ReplicaID, e.Seed, e.Messages, e.Duration = 5, 2, 42, 300, 3*time.Second
			e.MetricsAddr, e.Linger, e.LogFormat, e.LogLevel, e.Output = ":9100", time.Hour, "text", slog.LevelDebug, "json"
			e.RunID, e.StartAt = "abc123", time.UnixMilli(1700000000000)
		}},
		{name: "replica id above replicas", env: map[string]string{"DEMO_REPLICA_ID": "4"}, err: "DEMO_REPLICA_ID=4: more than DEMO_REPLICAS=3"},
		{name: "zero replicas", env: map[string]string{"DEMO_REPLICAS": "0"}, err: `DEMO_REPLICAS="0": want an integer from 1 to 64`},
		{name: "messages not a number", env: map[string]string{"DEMO_MESSAGES": "lots"}, err: `DEMO_MESSAGES="lots"`},
		{name: "negative duration", env: map[string]string{"DEMO_DURATION": "-1s"}, err: `DEMO_DURATION="-1s"`},
		{name: "bad seed", env: map[string]string{"DEMO_SEED": "-3"}, err: `DEMO_SEED="-3"`},
		{name: "bad format", env: map[string]string{"DEMO_LOG_FORMAT": "xml"}, err: `DEMO_LOG_FORMAT="xml"`},
		{name: "bad level", env: map[string]string{"DEMO_LOG_LEVEL": "loud"}, err: `DEMO_LOG_LEVEL="loud"`},
		{name: "bad output", env: map[string]string{"DEMO_OUTPUT": "csv"}, err: `DEMO_OUTPUT="csv"`},
		{name: "run id with a colon", env: map[string]string{"DEMO_RUN_ID": "a:b"}, err: `DEMO_RUN_ID="a:b"`},
		{name: "bad start", env: map[string]string{"DEMO_START_AT": "soon"}, err: `DEMO_START_AT="soon"`},
		{name: "two errors, both named", env: map[string]string{"DEMO_MESSAGES": "0", "DEMO_SEED": "x"}, err: `DEMO_MESSAGES="0": want an integer from 1 to 1000000; DEMO_SEED="x"`},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got, err := readEnv(func(k string) string { return s.env[k] })
			if s.err != "" {
				if err == nil || !strings.Contains(err.Error(), s.err) {
					t.Fatalf("err = %v, want it to contain %q", err, s.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := def
			s.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestNewClientHidesPassword(t *testing.T) {
	cfg, err := demoConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.RedisURL = "redis://:hunter2@host:notaport"
	_, err = newClient(cfg)
	if err == nil {
		t.Fatal("bad URL accepted")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestChat(t *testing.T) {
	p := planChat(2000, 20*time.Second)
	if want := (chatPlan{Messages: 2000, Duration: 20 * time.Second, Regulars: 142, Spammers: 4, Raiders: 300,
		RaidStart: 8 * time.Second, RaidEnd: 11 * time.Second}); p != want {
		t.Fatalf("plan = %+v, want %+v", p, want)
	}
	a, b := newChat(1, p), newChat(1, p)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two different chats")
	}
	if c := newChat(2, p); reflect.DeepEqual(a, c) {
		t.Fatal("seeds 1 and 2 gave the same chat")
	}
	perKind := map[string]int{}
	for i, m := range a {
		perKind[m.Kind]++
		if m.Seq != i {
			t.Fatalf("message %d has Seq %d", i, m.Seq)
		}
		if i > 0 && m.At < a[i-1].At {
			t.Fatalf("message %d at %v comes before %v", i, m.At, a[i-1].At)
		}
		if m.Kind == kindRaider && (m.At < p.RaidStart || m.At >= p.RaidEnd) {
			t.Fatalf("raider message at %v, outside the raid [%v, %v)", m.At, p.RaidStart, p.RaidEnd)
		}
		if m.At < 0 || m.At >= p.Duration {
			t.Fatalf("message at %v, outside the stream", m.At)
		}
	}
	if want := map[string]int{kindRegular: 1000, kindSpammer: 400, kindRaider: 600}; !reflect.DeepEqual(perKind, want) {
		t.Fatalf("messages per kind = %v, want %v", perKind, want)
	}

	// Round-robin: the shares partition the stream, and each replica sees
	// users of every kind, and most users on more than one replica.
	seen := map[int]int{}
	userReplicas := map[string]map[int]bool{}
	for id := 1; id <= 3; id++ {
		mine := share(a, id, 3)
		if n := len(mine); n != 667 && n != 666 {
			t.Fatalf("replica %d got %d messages, want 666 or 667", id, n)
		}
		for _, m := range mine {
			seen[m.Seq]++
			if userReplicas[m.User] == nil {
				userReplicas[m.User] = map[int]bool{}
			}
			userReplicas[m.User][id] = true
		}
		if k := chatters(mine); k[kindRegular] == 0 || k[kindSpammer] == 0 || k[kindRaider] == 0 {
			t.Fatalf("replica %d sees chatters %v, want every kind", id, k)
		}
	}
	if len(seen) != len(a) {
		t.Fatalf("shares cover %d of %d messages", len(seen), len(a))
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("message %d handled by %d replicas", seq, n)
		}
	}
	for _, spammer := range []string{"spam_bot0", "spam_bot1", "spam_bot2", "spam_bot3"} {
		if n := len(userReplicas[spammer]); n != 3 {
			t.Errorf("%s reaches %d replicas, want 3", spammer, n)
		}
	}
}

func TestFakeLLM(t *testing.T) {
	f := &fakeLLM{seed: 1, duration: 100 * time.Second, scale: 0.001}
	ctx := context.Background()
	steps := []struct {
		name     string
		endpoint string
		at       time.Duration
		fails    bool
	}{
		{"local during its outage", endpointLocal, 30 * time.Second, true},
		{"outage starts at 25%", endpointLocal, 25 * time.Second, true},
		{"outage ends at 40%", endpointLocal, 40 * time.Second, false},
		{"remote during the local outage", endpointRemote, 30 * time.Second, false},
	}
	for _, s := range steps {
		// Seq 0 with seed 1 draws no random failure on either endpoint.
		_, _, err := f.generate(ctx, s.endpoint, message{Seq: 0, At: s.at, User: "u", Text: "hi"})
		if (err != nil) != s.fails {
			t.Errorf("%s: err = %v, want failure %v", s.name, err, s.fails)
		}
	}
	if _, _, err := f.generate(ctx, "http://elsewhere", message{}); err == nil || !strings.Contains(err.Error(), "unknown endpoint") {
		t.Errorf("unknown endpoint: err = %v", err)
	}
	// The same message fares the same way every time.
	for seq := range 50 {
		m := message{Seq: seq, At: time.Second}
		m.Text = strings.Repeat("x", seq*10)
		_, n1, e1 := f.generate(ctx, endpointLocal, m)
		_, n2, e2 := f.generate(ctx, endpointLocal, m)
		if (e1 == nil) != (e2 == nil) || n1 != n2 {
			t.Fatalf("message %d: %v (%d tokens), then %v (%d tokens)", seq, e1, n1, e2, n2)
		}
		// A call costs its prompt and an answer of at most maxTokens, never
		// more than its estimate; a failed one costs nothing.
		if e1 == nil && (n1 <= promptTokens(m) || n1 > estimate(m)) || e1 != nil && n1 != 0 {
			t.Fatalf("message %d: %d tokens, %v; prompt %d, estimate %d", seq, n1, e1, promptTokens(m), estimate(m))
		}
	}
}

func TestMaxInWindow(t *testing.T) {
	sec := int64(1e6)
	steps := []struct {
		name   string
		spans  [][2]int64
		window int64
		want   int
	}{
		{"none", nil, 60 * sec, 0},
		{"all within", [][2]int64{{0, 10}, {sec, sec + 10}, {2 * sec, 2*sec + 10}}, 60 * sec, 3},
		{"the third falls out", [][2]int64{{0, 10}, {30 * sec, 30*sec + 10}, {60 * sec, 60*sec + 10}}, 60 * sec, 2},
		{"unsorted input", [][2]int64{{60 * sec, 60*sec + 10}, {0, 10}, {30 * sec, 30*sec + 10}}, 60 * sec, 2},
		// Whether Redis saw it inside the window is uncertain: not counted.
		{"jitter across the edge", [][2]int64{{0, 10}, {60*sec - 5, 60*sec + 5}}, 60 * sec, 1},
		{"slides", [][2]int64{{0, 1}, {50 * sec, 50*sec + 1}, {55 * sec, 55*sec + 1}, {70 * sec, 70*sec + 1}}, 60 * sec, 3},
	}
	for _, s := range steps {
		if got := maxInWindow(s.spans, s.window); got != s.want {
			t.Errorf("%s: maxInWindow = %d, want %d", s.name, got, s.want)
		}
	}
}

func TestMaxOverlap(t *testing.T) {
	steps := []struct {
		name  string
		spans [][2]int64
		want  int
	}{
		{"none", nil, 0},
		{"one", [][2]int64{{0, 5}}, 1},
		{"nested", [][2]int64{{0, 10}, {2, 8}, {3, 4}}, 3},
		{"end meets start", [][2]int64{{0, 5}, {5, 10}, {10, 15}}, 1},
		{"staggered", [][2]int64{{0, 4}, {1, 5}, {2, 6}, {5, 9}}, 3},
	}
	for _, s := range steps {
		if got := maxOverlap(s.spans); got != s.want {
			t.Errorf("%s: maxOverlap = %d, want %d", s.name, got, s.want)
		}
	}
}

func TestWikiCheck(t *testing.T) {
	sec := int64(1e6)
	base := summary{Wired: []string{"user", "wiki"}, Limits: limits{WikiPerSecond: 1, WikiBurst: 1}}
	steps := []struct {
		name  string
		calls [][2]int64
		ok    bool
		line  string
	}{
		{"one per second", [][2]int64{{0, 10}, {sec, sec + 10}, {2 * sec, 2*sec + 10}}, true,
			"wikipedia held to 1/s across 3 replicas: 3 lookups in 2.0s (at most 1 + 1/s × 2.0s = 3)"},
		{"two at once", [][2]int64{{0, 10}, {20, 30}, {2 * sec, 2*sec + 10}}, false,
			"wikipedia held to 1/s across 3 replicas: 3 lookups in 2.0s (at most 1 + 1/s × 2.0s = 3)"},
	}
	for _, s := range steps {
		sum := base
		sum.WikiCalls = s.calls
		c := wikiCheck(&sum, 3)
		if c.OK != s.ok || c.Line != s.line {
			t.Errorf("%s: %+v, want ok=%v line %q", s.name, c, s.ok, s.line)
		}
	}
	if c := wikiCheck(&summary{Wired: []string{"user"}}, 3); !c.Skipped {
		t.Errorf("not wired: %+v, want skipped", c)
	}
}

// TestReport merges two replicas whose users were held to the limit
// together, and one run where they were not.
func TestReport(t *testing.T) {
	sec := int64(1e6)
	lim := limits{Cooldown: 200 * time.Millisecond, Window: time.Minute, PerWindow: 2, Slots: 1}
	mk := func(id int, accepted map[string][][2]int64, leases [][2]int64) summary {
		return summary{Replica: id, Replicas: 2, Seed: 1, Limits: lim, Wired: []string{"user", "slots"},
			Messages: 5, Answered: 2, Held: map[string]int{"cooldown": 1, "window": 1, "slots": 1},
			Kinds:     map[string]*kindStats{kindRegular: {Messages: 5, Answered: 2, Held: map[string]int{"slots": id - 1}}},
			Endpoints: map[string]int{endpointLocal: 2}, Accepted: accepted, Leases: leases}
	}
	good := newReport([]summary{
		mk(2, map[string][][2]int64{"ann": {{10 * sec, 10*sec + 5}}}, [][2]int64{{5 * sec, 6 * sec}}),
		mk(1, map[string][][2]int64{"ann": {{0, 5}}, "bob": {{0, 5}}}, [][2]int64{{0, sec}, {sec, 2 * sec}}),
	})
	good.Chatters = map[string]int{kindRegular: 2}
	good.Redis = "redis://x"
	var out bytes.Buffer
	if err := good.writeTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"10 messages from 2 users (2 regulars, 0 spammers, 0 raiders), seed 1, 2 replicas sharing redis://x",
		"      1         5         2         1       1     0      1        0        0          0",
		"  total        10         4         2       2     0      2        0        0          0",
		"held back: cooldown 2, window 2, slots 2",
		"regulars: 4 of 10 answered; held back: slots 1\n",
		"users held to 2 per 1m0s across 2 replicas: max accepted for any user = 2 (limit 2: ann; 2 unshared limiters would allow 4) ✔",
		"max LLM slots held at once across 2 replicas = 1 ≤ 1 (separate pools would allow 2) ✔",
		"Wikipedia rate: not wired in this build (Limiter.Bucket) ·",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if good.Failed() {
		t.Error("Failed() on a run within the limits")
	}

	bad := newReport([]summary{
		mk(1, map[string][][2]int64{"ann": {{0, 5}, {sec, sec + 5}}}, [][2]int64{{0, 2 * sec}}),
		mk(2, map[string][][2]int64{"ann": {{2 * sec, 2*sec + 5}}}, [][2]int64{{sec, 3 * sec}}),
	})
	if !bad.Failed() {
		t.Fatal("Failed() is false with 3 accepted in a window of 2 and 2 slots of 1")
	}
	if c := bad.Checks[0]; c.OK || !strings.Contains(c.Line, "max accepted for any user = 3 (limit 2") {
		t.Errorf("window check: %+v", c)
	}
	if c := bad.Checks[1]; c.OK || !strings.Contains(c.Line, "= 2 > 1") {
		t.Errorf("slots check: %+v", c)
	}
	if strings.Contains(bad.Checks[0].Line, "without Redis") {
		t.Errorf("no degraded decisions, yet the check blames Redis: %s", bad.Checks[0].Line)
	}

	// The same run with decisions taken without Redis says so.
	deg := []summary{
		mk(1, map[string][][2]int64{"ann": {{0, 5}, {sec, sec + 5}}}, nil),
		mk(2, map[string][][2]int64{"ann": {{2 * sec, 2*sec + 5}}}, nil),
	}
	deg[1].Degraded = 3
	deg[0].Limits.RedisTimeout = 250 * time.Millisecond
	dr := newReport(deg)
	if c := dr.Checks[0]; c.OK || !strings.HasSuffix(c.Line, " — 3 decisions were taken without Redis, each replica by its own limits") {
		t.Errorf("degraded window check: %+v", c)
	}
	out.Reset()
	if err := dr.writeTable(&out); err != nil {
		t.Fatal(err)
	}
	if want := "3 decisions were taken without Redis (Degraded: no answer within FLOODGATE_REDIS_TIMEOUT=250ms"; !strings.Contains(out.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, out.String())
	}
}

func TestReplicaMetricsAddrs(t *testing.T) {
	steps := []struct {
		addr string
		want []string
		err  string
	}{
		{"", nil, ""},
		{":9100", []string{":9100", ":9101", ":9102"}, ""},
		{"127.0.0.1:0", []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}, ""},
		{"9100", nil, "want host:port"},
		{":65535", nil, "want a port from 0 to 65533"},
	}
	for _, s := range steps {
		got, err := replicaMetricsAddrs(s.addr, 3)
		if s.err != "" {
			if err == nil || !strings.Contains(err.Error(), s.err) {
				t.Errorf("%q: err = %v, want %q", s.addr, err, s.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, s.want) {
			t.Errorf("%q: %v, %v; want %v", s.addr, got, err, s.want)
		}
	}
}

func TestRunArgs(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"extra"}, &out, &errOut); err != errUsage {
		t.Errorf("unexpected argument: err = %v, want errUsage", err)
	}
	if !strings.Contains(errOut.String(), `unexpected argument "extra"`) {
		t.Errorf("stderr: %q", errOut.String())
	}
	errOut.Reset()
	if err := Run(context.Background(), []string{"-h"}, &out, &errOut); err != nil {
		t.Errorf("-h: err = %v", err)
	}
	if !strings.Contains(errOut.String(), "--replica") && !strings.Contains(errOut.String(), "-replica") {
		t.Errorf("-h prints no usage: %q", errOut.String())
	}
}

func TestAgreeRun(t *testing.T) {
	mr, rdb := miniredisClient(t)
	ctx := context.Background()
	id1, at1, err := agreeRun(ctx, rdb, "p:", time.Second, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	id2, at2, err := agreeRun(ctx, rdb, "p:", 5*time.Second, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 || !at1.Equal(at2) {
		t.Fatalf("second replica got run %s at %v, first %s at %v", id2, at2, id1, at1)
	}
	if ttl := mr.TTL("p:demo:run"); ttl != time.Minute {
		t.Errorf("run key TTL = %v, want 1m", ttl)
	}
	mr.FastForward(time.Minute)
	id3, _, err := agreeRun(ctx, rdb, "p:", 10*time.Second, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if id3 == id1 {
		t.Errorf("after the key expired the run id %s was reused", id3)
	}
	mr.Set("p:demo:run", "garbage")
	if _, _, err := agreeRun(ctx, rdb, "p:", time.Second, time.Minute); err == nil || !strings.Contains(err.Error(), "not a demo run id") {
		t.Errorf("garbage run key: err = %v", err)
	}
}

// TestReplica runs one replica against miniredis with the whole chat at
// once: every message is accounted for, and no user passes the limit.
func TestReplica(t *testing.T) {
	mr := frozenMiniredis(t)
	t.Setenv("FLOODGATE_REDIS_URL", "redis://:secret-pw@"+mr.Addr())
	mr.RequireAuth("secret-pw")
	t.Setenv("DEMO_REPLICA_ID", "2")
	t.Setenv("DEMO_REPLICAS", "2")
	t.Setenv("DEMO_MESSAGES", "120")
	t.Setenv("DEMO_DURATION", "0s")
	t.Setenv("DEMO_LOG_LEVEL", "debug")
	t.Setenv("DEMO_OUTPUT", "json")
	// All 60 messages hit miniredis at once, one script at a time, slowly
	// under -race: a generous timeout keeps this about logic, not speed.
	t.Setenv("FLOODGATE_REDIS_TIMEOUT", "20s")
	out, errOut := runAsReplica(t)
	if strings.Contains(errOut+out, "secret-pw") {
		t.Fatal("the Redis password was printed")
	}
	s, held := replicaSummary(t, out)
	if s.Replica != 2 || s.Messages != 60 {
		t.Fatalf("replica %d handled %d messages, want replica 2 with 60", s.Replica, s.Messages)
	}
	if s.Answered+held != s.Messages {
		t.Fatalf("answered %d + held %d != %d messages (%v)", s.Answered, held, s.Messages, s.Held)
	}
	if s.Held[heldError] != 0 {
		t.Fatalf("%d limiter errors:\n%s", s.Held[heldError], errOut)
	}
	// Frozen Redis time: every user's first message gets through the user
	// limit, every repeat meets the cooldown.
	for u, acc := range s.Accepted {
		if len(acc) != 1 {
			t.Errorf("%s accepted %d times at once, want 1 (cooldown)", u, len(acc))
		}
	}
	if s.Held["cooldown"] == 0 {
		t.Errorf("no cooldown denials: %v", s.Held)
	}
	if s.Limits.Cooldown != 200*time.Millisecond || s.Limits.Window != time.Minute || s.Limits.PerWindow != 20 {
		t.Errorf("limits %+v, want the demo's 200ms and 20 per 1m", s.Limits)
	}
	// The run's keys carry the run id, and every key has a TTL.
	keys := mr.Keys()
	if len(keys) == 0 {
		t.Fatal("no keys written")
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "floodgate:demo") {
			t.Errorf("key %q outside the demo's prefix", k)
		}
		if mr.TTL(k) <= 0 {
			t.Errorf("key %q has no TTL", k)
		}
	}
	var logLine map[string]any
	first, _, _ := strings.Cut(errOut, "\n")
	if err := json.Unmarshal([]byte(first), &logLine); err != nil || logLine["replica"] != float64(2) {
		t.Errorf("first log line is not JSON with replica=2: %q (%v)", first, err)
	}
}

// loneReplica starts a miniredis whose clock stands still and sets the
// environment of the only replica of run runID on it (REDIS_URL,
// setLoneReplica).
func loneReplica(t *testing.T, runID string, messages int) *miniredis.Miniredis {
	mr := frozenMiniredis(t)
	t.Setenv("REDIS_URL", "redis://"+mr.Addr())
	setLoneReplica(t, runID, messages)
	return mr
}

// setLoneReplica sets the environment of `chatbot-demo --replica` as
// the only replica of run runID, sending messages at once, with a Redis
// timeout for a loaded machine.
func setLoneReplica(t *testing.T, runID string, messages int) {
	t.Setenv("FLOODGATE_REDIS_TIMEOUT", "20s")
	t.Setenv("DEMO_REPLICA_ID", "1")
	t.Setenv("DEMO_REPLICAS", "1")
	t.Setenv("DEMO_MESSAGES", fmt.Sprint(messages))
	t.Setenv("DEMO_DURATION", "0s")
	t.Setenv("DEMO_RUN_ID", runID)
	t.Setenv("DEMO_START_AT", fmt.Sprint(time.Now().UnixMilli()))
}

// frozenMiniredis is a miniredis whose TIME stands still: however slowly
// the test runs, every repeat falls within its user's cooldown.
func frozenMiniredis(t *testing.T) *miniredis.Miniredis {
	mr := miniredis.RunT(t)
	mr.SetTime(time.Date(2025, 6, 1, 20, 0, 0, 0, time.UTC))
	return mr
}

// miniredisClient is a miniredis and a client on it, closed when the test
// ends.
func miniredisClient(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return mr, rdb
}

// runAsReplica runs `chatbot-demo --replica` in the environment the test
// set, fails the test if it fails, and returns what it printed.
func runAsReplica(t *testing.T) (out, errOut string) {
	t.Helper()
	var o, e bytes.Buffer
	if err := Run(context.Background(), []string{"--replica"}, &o, &e); err != nil {
		t.Fatalf("Run: %v\n%s", err, e.String())
	}
	return o.String(), e.String()
}

// replicaSummary decodes the summary a replica printed last (DEMO_OUTPUT
// json) and counts the messages it held back, for whatever reason.
func replicaSummary(t *testing.T, out string) (s summary, held int) {
	t.Helper()
	if err := lastJSON([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Held {
		held += n
	}
	return s, held
}

// TestReplicaAlone: a replica without a launcher (as in docker compose)
// pools its summary in Redis; alone, it is the last and prints the report.
func TestReplicaAlone(t *testing.T) {
	loneReplica(t, "alone", 40)
	out, _ := runAsReplica(t)
	for _, want := range []string{
		"Floodgate chatbot demo: 40 messages",
		"max accepted for any user = 1 (limit 20",
		"max LLM slots held at once across 1 replicas",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "✘") {
		t.Errorf("a check failed:\n%s", out)
	}
}

func TestGatherSummary(t *testing.T) {
	mr, rdb := miniredisClient(t)
	ctx := context.Background()
	steps := []struct {
		replica int
		want    []int // replicas in the returned summaries; nil: not the last
	}{
		{2, nil},
		{3, nil},
		{1, []int{1, 2, 3}},
	}
	for _, s := range steps {
		got, err := gatherSummary(ctx, rdb, "p:", &summary{Replica: s.replica, Replicas: 3, RunID: "r1", Messages: 10 * s.replica}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int
		for _, g := range got {
			ids = append(ids, g.Replica)
			if g.Messages != 10*g.Replica {
				t.Errorf("replica %d: messages %d, want %d", g.Replica, g.Messages, 10*g.Replica)
			}
		}
		if !reflect.DeepEqual(ids, s.want) {
			t.Fatalf("replica %d arriving: got summaries of %v, want %v", s.replica, ids, s.want)
		}
	}
	for _, k := range []string{"p:{demo-r1}:summary:1", "p:{demo-r1}:done"} {
		if ttl := mr.TTL(k); ttl != time.Minute {
			t.Errorf("%s: TTL %v, want 1m", k, ttl)
		}
	}
	// A replica id counted twice leaves a hole: an error, not a short report.
	if _, err := gatherSummary(ctx, rdb, "p:", &summary{Replica: 1, Replicas: 2, RunID: "r2"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := gatherSummary(ctx, rdb, "p:", &summary{Replica: 1, Replicas: 2, RunID: "r2"}, time.Minute); err == nil || !strings.Contains(err.Error(), "replica 2's summary is missing") {
		t.Errorf("duplicate replica id: err = %v", err)
	}
}
