package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

// runReplica is one bot replica: it replays its share of the chat through
// the shared limiter, then prints its summary as one JSON line on stdout.
func runReplica(ctx context.Context, env demoEnv, stdout, stderr io.Writer) error {
	format := env.LogFormat
	if format == "" {
		format = "json"
	}
	if env.ReplicaID == 0 {
		if env.Replicas != 1 {
			return fmt.Errorf("invalid environment: DEMO_REPLICA_ID is not set (1..%d)", env.Replicas)
		}
		env.ReplicaID = 1
	}
	log := newLogger(stderr, format, env.LogLevel).With("replica", env.ReplicaID)

	cfg, err := demoConfig()
	if err != nil {
		return err
	}
	if cfg.RedisURL == "" {
		return errors.New("invalid environment: a replica needs FLOODGATE_REDIS_URL or REDIS_URL (run without --replica for an embedded Redis)")
	}
	rdb, err := newClient(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := waitRedis(ctx, rdb, 15*time.Second); err != nil {
		return fmt.Errorf("redis %s: %w", limiter.RedactURL(cfg.RedisURL), err)
	}

	runID, startAt := env.RunID, env.StartAt
	if runID == "" || startAt.IsZero() {
		if runID, startAt, err = agreeRun(ctx, rdb, cfg.KeyPrefix, 2*time.Second, 30*time.Second); err != nil {
			return err
		}
	}
	// Fresh keys per run: a second run within the hour would otherwise
	// find the first run's users at their limits.
	basePrefix := cfg.KeyPrefix
	cfg.KeyPrefix += "demo-" + runID + ":"
	log = log.With("run", runID)

	var obs *metrics.Observer
	var reg *prometheus.Registry
	if env.MetricsAddr != "" {
		reg = prometheus.NewRegistry()
		if err := reg.Register(collectors.NewGoCollector()); err != nil {
			return err
		}
		if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return err
		}
		if obs, err = metrics.New(reg); err != nil {
			return err
		}
		cfg.Observer = obs
	}
	lim, err := limiter.New(rdb, cfg)
	if err != nil {
		return err
	}

	chat := newChat(env.Seed, planChat(env.Messages, env.Duration))
	mine := share(chat, env.ReplicaID, env.Replicas)
	sum := &summary{
		Replica: env.ReplicaID, Replicas: env.Replicas, RunID: runID, Seed: env.Seed,
		Redis: limiter.RedactURL(cfg.RedisURL), StartedAt: startAt.UnixMilli(),
		Limits: limits{Cooldown: cfg.UserCooldown, Window: cfg.UserWindow, PerWindow: cfg.MaxRequestsPerUserHour,
			Slots: cfg.MaxConcurrentUsers, RedisTimeout: cfg.RedisTimeout},
	}
	if r, ok := cfg.APIRates["wikipedia"]; ok {
		sum.Limits.WikiPerSecond, sum.Limits.WikiBurst = r.PerSecond, r.Burst
	}
	b := &bot{replica: env.ReplicaID, lim: lim, llm: &fakeLLM{seed: env.Seed, duration: env.Duration}, log: log, rec: newRecorder(sum)}
	if sum.Wired, err = wire(b, lim, obs); err != nil {
		return err
	}

	var srv *metricsServer
	if env.MetricsAddr != "" {
		if srv, err = serveMetrics(env.MetricsAddr, reg, log); err != nil {
			return err
		}
		defer srv.close()
	}

	log.Info("replica starting", "replicas", env.Replicas, "messages", len(mine), "of", len(chat),
		"start_in", time.Until(startAt).Round(time.Millisecond), "redis", limiter.RedactURL(cfg.RedisURL),
		"policies", strings.Join(sum.Wired, ","), "cooldown", cfg.UserCooldown,
		"per_window", cfg.MaxRequestsPerUserHour, "window", cfg.UserWindow)
	replay(ctx, startAt, mine, b.handle)
	sum.FinishedAt = time.Now().UnixMilli()
	if ctx.Err() != nil {
		log.Info("replica interrupted", "messages", sum.Messages, "answered", sum.Answered, "held", sum.Held)
		return ctx.Err()
	}
	log.Info("replica done", "messages", sum.Messages, "answered", sum.Answered, "held", sum.Held)
	if err := reportReplica(ctx, env, rdb, basePrefix, sum, stdout, log); err != nil {
		return err
	}
	if srv != nil && env.Linger > 0 {
		log.Info("serving /metrics after the replay", "for", env.Linger, "addr", srv.addr)
		t := time.NewTimer(env.Linger)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return nil
}

// reportReplica hands the summary on: as a JSON line on stdout for the
// launcher (DEMO_OUTPUT=json), else through Redis to the last replica to
// finish, which prints the report for all of them.
func reportReplica(ctx context.Context, env demoEnv, rdb redis.UniversalClient, prefix string, sum *summary, stdout io.Writer, log *slog.Logger) error {
	if env.Output == "json" {
		return json.NewEncoder(stdout).Encode(sum)
	}
	sums, err := gatherSummary(ctx, rdb, prefix, sum, env.Duration+10*time.Minute)
	if err != nil {
		return err
	}
	if sums == nil {
		log.Info("summary stored; the last replica to finish prints the report")
		return nil
	}
	rep := newReport(sums)
	rep.Chatters = chatters(newChat(env.Seed, planChat(env.Messages, env.Duration)))
	rep.Duration = env.Duration
	if err := rep.writeTable(stdout); err != nil {
		return err
	}
	if rep.Failed() {
		log.Error("a shared limit was exceeded (see the ✘ lines)")
	}
	return nil
}

// replay hands each message to handle at its time after start, in its own
// goroutine (answers overlap, as in a real bot), and waits for all.
// Messages whose time has passed go at once.
func replay(ctx context.Context, start time.Time, msgs []message, handle func(context.Context, message)) {
	var wg sync.WaitGroup
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for _, m := range msgs {
		if wait := time.Until(start.Add(m.At)); wait > 0 {
			t.Reset(wait)
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case <-t.C:
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(ctx, m)
		}()
	}
	wg.Wait()
}

// waitRedis pings until Redis answers (compose starts everyone at once).
func waitRedis(ctx context.Context, rdb redis.UniversalClient, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		err := rdb.Ping(pctx).Err()
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not answering after %v: %w", limit, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// agreeRun lets replicas that were started independently (docker compose)
// agree on a run id and a common start time: the first to arrive writes
// them with SET NX, the others read them. The key expires after ttl (long
// enough for every replica to start), so the next run gets fresh ones.
func agreeRun(ctx context.Context, rdb redis.UniversalClient, prefix string, startIn, ttl time.Duration) (string, time.Time, error) {
	key := prefix + "demo:run"
	start := time.Now().Add(startIn).UnixMilli()
	val := strconv.FormatInt(start, 36) + " " + strconv.FormatInt(start, 10)
	ok, err := rdb.SetNX(ctx, key, val, ttl).Result()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("agreeing on a run id: %w", err)
	}
	if !ok {
		if val, err = rdb.Get(ctx, key).Result(); err != nil {
			return "", time.Time{}, fmt.Errorf("reading the run id: %w", err)
		}
	}
	id, ms, found := strings.Cut(val, " ")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !found || err != nil || !validRunID(id) {
		return "", time.Time{}, fmt.Errorf("key %s holds %q, not a demo run id", key, val)
	}
	return id, time.UnixMilli(n), nil
}

// metricsServer serves /metrics for one replica.
type metricsServer struct {
	addr string
	srv  *http.Server
	done chan struct{}
}

func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("DEMO_METRICS_ADDR=%s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "chatbot-demo replica: metrics at /metrics")
	})
	s := &metricsServer{addr: ln.Addr().String(), srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", s.addr, "path", "/metrics")
	return s, nil
}

func (s *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
}
