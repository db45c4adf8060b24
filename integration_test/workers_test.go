package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
	"github.com/redis/go-redis/v9"
)

// Several tests run this test binary again as separate OS processes
// (replicas of a bot). A worker reads its role and settings from the
// environment, does its part against REDIS_URL and prints one JSON line.

const workerEnv = "FLOODGATE_TEST_WORKER"

// workers maps a role to what a worker process does; test files register
// theirs in init. The function returns the JSON-able result.
var workers = map[string]func(ctx context.Context) (any, error){}

func runWorker(role string) int {
	fn, ok := workers[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown worker role %q\n", role)
		return 3
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := fn(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker %s: %v\n", role, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "worker %s: %v\n", role, err)
		return 1
	}
	return 0
}

// workerClient is a worker process's client on REDIS_URL with a pool of
// poolSize connections, one per goroutine it runs, honouring context
// deadlines as limiter.NewClient's do.
func workerClient(poolSize int) (*redis.Client, error) {
	opt, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		return nil, err
	}
	opt.PoolSize = poolSize
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}

// workerLimiter is a worker process's Limiter with cfg under PREFIX, on a
// workerClient that the caller closes.
func workerLimiter(poolSize int, cfg limiter.Config) (*limiter.Limiter, *redis.Client, error) {
	rdb, err := workerClient(poolSize)
	if err != nil {
		return nil, nil, err
	}
	cfg.KeyPrefix = os.Getenv("PREFIX")
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return l, rdb, nil
}

// runWorkers starts n worker processes of role with env added (plus
// REDIS_URL and WORKER_INDEX), waits for all, and decodes each one's result
// into a new T.
func runWorkers[T any](t *testing.T, role string, n int, env map[string]string) []T {
	t.Helper()
	needRedis(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	results := make([]T, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), workerEnv+"="+role, "REDIS_URL="+redisURL, fmt.Sprintf("WORKER_INDEX=%d", i))
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("worker %d: %v: %s", i, err, stderr.String())
				return
			}
			sc := bufio.NewScanner(&stdout)
			var last []byte
			for sc.Scan() {
				if len(bytes.TrimSpace(sc.Bytes())) > 0 {
					last = append([]byte(nil), sc.Bytes()...)
				}
			}
			if err := json.Unmarshal(last, &results[i]); err != nil {
				errs[i] = fmt.Errorf("worker %d: result %q: %v", i, last, err)
			}
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return results
}
