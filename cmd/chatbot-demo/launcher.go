package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// errChecksFailed: a check found a limit exceeded (the exit status says
// so too, for scripts).
var errChecksFailed = errors.New("a shared limit was exceeded (see the ✘ lines)")

// launch runs env.Replicas replicas of this program as separate processes
// against one Redis, then prints their merged report.
func launch(ctx context.Context, env demoEnv, stdout, stderr io.Writer) error {
	format := env.LogFormat
	if format == "" {
		format = "text"
	}
	log := newLogger(stderr, format, env.LogLevel)
	cfg, err := demoConfig()
	if err != nil {
		return err
	}
	extra := map[string]string{}
	redisShown := limiter.RedactURL(cfg.RedisURL)
	if cfg.RedisURL == "" {
		srv, err := redisproc.Start(ctx, redisproc.Options{})
		if err != nil {
			return fmt.Errorf("no FLOODGATE_REDIS_URL or REDIS_URL, and the embedded Redis did not start: %w", err)
		}
		defer srv.Stop()
		extra["FLOODGATE_REDIS_URL"] = "redis://" + srv.Addr
		redisShown = "an embedded redis-server on " + srv.Addr
		log.Info("started an embedded redis-server", "addr", srv.Addr)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding my own binary to start replicas: %w", err)
	}

	// One run id and start time for all, a moment ahead so every replica
	// is up when the chat begins.
	start := time.Now().Add(time.Second)
	runID := strconv.FormatInt(start.UnixMilli(), 36)
	extra["DEMO_RUN_ID"] = runID
	extra["DEMO_START_AT"] = strconv.FormatInt(start.UnixMilli(), 10)
	extra["DEMO_REPLICAS"] = strconv.Itoa(env.Replicas)
	extra["DEMO_OUTPUT"] = "json" // each replica's summary, on its stdout
	// The report needs every replica to exit; lingering is for compose.
	extra["DEMO_LINGER"] = "0s"
	if env.LogFormat == "" {
		extra["DEMO_LOG_FORMAT"] = "text"
	}
	metricsAddrs, err := replicaMetricsAddrs(env.MetricsAddr, env.Replicas)
	if err != nil {
		return err
	}
	log.Info("starting replicas", "replicas", env.Replicas, "messages", env.Messages, "duration", env.Duration, "run", runID)

	errOut := &lockedWriter{w: stderr}
	outs := make([]bytes.Buffer, env.Replicas)
	errs := make([]error, env.Replicas)
	var wg sync.WaitGroup
	for i := range env.Replicas {
		cmd := exec.CommandContext(ctx, exe, "--replica")
		cmd.Env = os.Environ()
		for k, v := range extra {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Env = append(cmd.Env, "DEMO_REPLICA_ID="+strconv.Itoa(i+1))
		if metricsAddrs != nil {
			cmd.Env = append(cmd.Env, "DEMO_METRICS_ADDR="+metricsAddrs[i])
		}
		cmd.Stdout, cmd.Stderr = &outs[i], errOut
		// Replicas get SIGTERM on Ctrl-C and die with the launcher.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 5 * time.Second
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting replica %d: %w", i+1, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("replica %d: %w", i+1, err)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	sums := make([]summary, env.Replicas)
	for i := range sums {
		if errs[i] != nil {
			return errs[i]
		}
		if err := lastJSON(outs[i].Bytes(), &sums[i]); err != nil {
			return fmt.Errorf("replica %d: %w", i+1, err)
		}
	}
	rep := newReport(sums)
	rep.Chatters = chatters(newChat(env.Seed, planChat(env.Messages, env.Duration)))
	rep.Duration = env.Duration
	rep.Redis = redisShown
	if env.Output == "json" {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else if err := rep.writeTable(stdout); err != nil {
		return err
	}
	if rep.Failed() {
		return errChecksFailed
	}
	return nil
}

// replicaMetricsAddrs gives replica i the port of addr plus i, so
// DEMO_METRICS_ADDR=:9100 serves replicas 1..3 on 9100..9102. Port 0 gives
// each a free port of its own choosing. Empty addr: no metrics.
func replicaMetricsAddrs(addr string, n int) ([]string, error) {
	if addr == "" {
		return nil, nil
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("DEMO_METRICS_ADDR=%q: want host:port such as :9100", addr)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port+n-1 > 65535 {
		return nil, fmt.Errorf("DEMO_METRICS_ADDR=%q: want a port from 0 to %d", addr, 65535-n+1)
	}
	out := make([]string, n)
	for i := range out {
		p := port
		if p != 0 {
			p += i
		}
		out[i] = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return out, nil
}

// lastJSON decodes the last non-empty line of out into v.
func lastJSON(out []byte, v any) error {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
	var last []byte
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			last = append(last[:0], sc.Bytes()...)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading its summary: %w", err)
	}
	if last == nil {
		return errors.New("printed no summary")
	}
	if err := json.Unmarshal(last, v); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	return nil
}

// lockedWriter lets several replicas' log copies share one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
