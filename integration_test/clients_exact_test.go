package integration_test

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// TestClientsAndGoReplicaShareLimits: every door at once on one Redis. A Go
// replica (library, direct to Redis), a sync Python replica (16 threads,
// server A), an asyncio Python replica (200 tasks, server B) and a Node
// replica (64 concurrent calls, server B) hammer the same 50 users with
// cooldown off and a limit of 20. Each side tries 15 times per user, so
// any one alone would get 15; together every user gets exactly 20.
func TestClientsAndGoReplicaShareLimits(t *testing.T) {
	// Kept under -short: the fast tier's one real test of both clients.
	needPython(t)
	needNode(t)
	const users, limit, attempts = 50, 20, 15
	env, lim := countingSetup(t, limit)
	srvA, srvB := startServeProc(t, env), startServeProc(t, env)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	common := []string{fmt.Sprintf("USERS=%d", users), fmt.Sprintf("ATTEMPTS=%d", attempts)}
	threadsR := startPyReplica(ctx, t, "python threads replica", srvA.URL, append(common, "THREADS=16")...)
	tasksR := startPyReplica(ctx, t, "python asyncio replica", srvB.URL, append(common, "TASKS=200")...)
	bot := startNodeBot(t, srvB.URL)

	// Start all four together. The Go replica paces itself a little so its
	// requests interleave with the slower clients' instead of finishing
	// before their first.
	io.WriteString(threadsR.stdin, "go\n")
	io.WriteString(tasksR.stdin, "go\n")
	bot.send(fmt.Sprintf("hammer %d %d 64", users, attempts))
	goAllowed := make([]atomic.Int64, users)
	jobs := make(chan int, users*attempts)
	for a := 0; a < attempts; a++ {
		for u := users - 1; u >= 0; u-- { // the clients start from viewer00
			jobs <- u
		}
	}
	close(jobs)
	goErr := concurrently(32, func(int) error {
		for u := range jobs {
			d, err := lim.Allow(ctx, fmt.Sprintf("viewer%02d", u))
			switch {
			case err != nil:
				return err
			case d.Degraded:
				return fmt.Errorf("a degraded decision for viewer%02d", u)
			case d.Allowed:
				goAllowed[u].Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	var nodeRes pyReplicaResult // the Node driver prints the same shape
	bot.read(&nodeRes)
	results := []struct {
		name string
		res  pyReplicaResult
	}{
		{"Python threads", threadsR.result(t)},
		{"Python asyncio", tasksR.result(t)},
		{"Node", nodeRes},
	}
	for _, r := range results {
		if len(r.res.Errors) != 0 || r.res.Degraded != 0 {
			t.Fatalf("%s: errors or degraded decisions: %v (+%d degraded)", r.name, r.res.Errors, r.res.Degraded)
		}
		if len(r.res.Allowed) != users {
			t.Errorf("%s reported %d users, want %d", r.name, len(r.res.Allowed), users)
		}
	}
	if goErr != nil {
		t.Fatalf("Go replica: %v", goErr)
	}
	totals := make([]int, len(results)+1)
	for u := 0; u < users; u++ {
		name := fmt.Sprintf("viewer%02d", u)
		got := []int{int(goAllowed[u].Load())}
		for _, r := range results {
			got = append(got, r.res.Allowed[name])
		}
		sum := 0
		for i, n := range got {
			sum += n
			totals[i] += n
		}
		if sum != limit {
			t.Errorf("%s: %d allowed (Go, Python threads, Python asyncio, Node: %v), want exactly %d", name, sum, got, limit)
		}
	}
	t.Logf("allowed: Go %d, Python threads %d, Python asyncio %d, Node %d over %d users (limit %d each)",
		totals[0], totals[1], totals[2], totals[3], users, limit)
}
