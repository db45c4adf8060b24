package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

func init() {
	workers["budget-calls"] = budgetCallsWorker
	clusterTests = append(clusterTests, clusterTest{name: "BudgetOnCluster", run: testClusterBudget})
}

// budgetCall is one admitted LLM call as a worker saw it: wall-clock ns
// (one machine, one clock) around its Reserve and after its Settle.
type budgetCall struct {
	User         string `json:"u"`
	Estimate     int    `json:"e"`
	Actual       int    `json:"a"`
	ReserveStart int64  `json:"rs"`
	ReserveEnd   int64  `json:"re"`
	SettleEnd    int64  `json:"se"`
}

type budgetWorkerResult struct {
	Calls  []budgetCall `json:"calls"`
	Denied int          `json:"denied"`
}

const budgetTestLimit = 20_000

// budgetCallsWorker is one bot replica: 32 goroutines making LLM calls for
// random users among USERS, ROUNDS each: Reserve an estimate of 50..2,000
// units, "call the model" for 0..1 ms, Settle at the estimate (MODE exact)
// or above it by 0..500 (MODE overshoot). It returns every admitted call.
func budgetCallsWorker(ctx context.Context) (any, error) {
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 5 * time.Second
	l, rdb, err := workerLimiter(32, cfg)
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	b, err := l.Budget("llm", limiter.BudgetSettings{Limit: budgetTestLimit, Lease: time.Minute})
	if err != nil {
		return nil, err
	}
	users, _ := strconv.Atoi(os.Getenv("USERS"))
	rounds, _ := strconv.Atoi(os.Getenv("ROUNDS"))
	overshoot := os.Getenv("MODE") == "overshoot"
	var mu sync.Mutex
	var res budgetWorkerResult
	err = concurrently(32, func(g int) error {
		rng := rand.New(rand.NewPCG(seed(g), uint64(os.Getpid())))
		for i := 0; i < rounds; i++ {
			c := budgetCall{User: "user-" + strconv.Itoa(rng.IntN(users)), Estimate: 50 + rng.IntN(1951)}
			c.ReserveStart = time.Now().UnixNano()
			d, err := b.Reserve(ctx, c.User, c.Estimate)
			c.ReserveEnd = time.Now().UnixNano()
			if err != nil {
				return err
			}
			if !d.Allowed {
				mu.Lock()
				res.Denied++
				mu.Unlock()
				continue
			}
			time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
			c.Actual = c.Estimate
			if overshoot {
				c.Actual += rng.IntN(501)
			}
			if err := b.Settle(ctx, c.User, d.Token, c.Actual); err != nil {
				return err
			}
			c.SettleEnd = time.Now().UnixNano()
			mu.Lock()
			res.Calls = append(res.Calls, c)
			mu.Unlock()
		}
		return nil
	})
	return res, err
}

func seed(g int) uint64 { return uint64(g)*7919 + 1 }

// budgetAcrossProcesses runs 3 worker processes × 32 goroutines on users
// users and returns every admitted call, per user, and the budget to peek.
func budgetAcrossProcesses(t *testing.T, mode string, users int) (map[string][]budgetCall, *limiter.Budget) {
	t.Helper()
	rdb, prefix := prefixedClient(t)
	results := runWorkers[budgetWorkerResult](t, "budget-calls", 3, map[string]string{
		"PREFIX": prefix, "USERS": strconv.Itoa(users), "ROUNDS": "60", "MODE": mode,
	})
	calls := map[string][]budgetCall{}
	denied := 0
	for _, r := range results {
		denied += r.Denied
		for _, c := range r.Calls {
			calls[c.User] = append(calls[c.User], c)
		}
	}
	if denied == 0 {
		t.Fatal("no reservation was denied: the test did not reach the limit")
	}
	cfg := limiter.DefaultConfig()
	cfg.KeyPrefix = prefix
	l := newLimiter(t, rdb, cfg)
	b, err := l.Budget("llm", limiter.BudgetSettings{Limit: budgetTestLimit, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return calls, b
}

// TestBudgetExactAcrossProcesses: 3 OS processes × 32 goroutines × 60
// calls (5,760) for 20 users with 20,000 units an hour, each call settled
// at its estimate. No user may pass 20,000 (atomicity), Redis must hold
// exactly what was admitted (no lost update), and the room left must be
// exactly Limit minus that: one more unit than the room is denied, the
// room itself is admitted.
func TestBudgetExactAcrossProcesses(t *testing.T) {
	skipIfShort(t) // -short keeps TestBudgetListpackPastTheBound
	const users = 20
	calls, b := budgetAcrossProcesses(t, "exact", users)
	ctx := context.Background()
	for i := 0; i < users; i++ {
		u := "user-" + strconv.Itoa(i)
		sum := 0
		for _, c := range calls[u] {
			sum += c.Actual
		}
		if sum > budgetTestLimit {
			t.Errorf("%s: %d units admitted, more than the limit %d", u, sum, budgetTestLimit)
		}
		st, err := b.Peek(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if st.Spent != sum || st.Reserved != 0 || st.Remaining != budgetTestLimit-sum {
			t.Errorf("%s: Peek %+v, but the workers admitted %d", u, st, sum)
		}
		room := budgetTestLimit - sum
		if d, err := b.Charge(ctx, u, room+1); err != nil || d.Allowed {
			t.Errorf("%s: %d units with %d left: %+v, %v; want denied", u, room+1, room, d, err)
		}
		if room > 0 {
			if d, err := b.Charge(ctx, u, room); err != nil || !d.Allowed || d.Remaining != 0 {
				t.Errorf("%s: the last %d units: %+v, %v; want allowed", u, room, d, err)
			}
		}
	}
}

// TestBudgetOvershootBoundAcrossProcesses: the same contention, each call
// settled 0..500 units above its estimate. Redis must hold exactly the sum
// of the actual costs, and no user may hold more than Limit plus the
// overshoots of the calls that may have been unsettled when their newest
// admission was decided: the calls whose Reserve-to-Settle span overlaps
// that admission's Reserve. (Without overlap that is the last call's
// overshoot alone: TestBudgetSequentialOvershootBound in limiter.)
func TestBudgetOvershootBoundAcrossProcesses(t *testing.T) {
	skipIfShort(t) // -short keeps TestBudgetListpackPastTheBound
	const users = 20
	calls, b := budgetAcrossProcesses(t, "overshoot", users)
	ctx := context.Background()
	over := 0
	for i := 0; i < users; i++ {
		u := "user-" + strconv.Itoa(i)
		cs := calls[u]
		sum := 0
		for _, c := range cs {
			sum += c.Actual
		}
		st, err := b.Peek(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if st.Spent != sum || st.Reserved != 0 {
			t.Errorf("%s: Peek %+v, but the workers' calls cost %d", u, st, sum)
		}
		// Settles only add, so the final sum is the most the window held.
		bound := budgetTestLimit
		for _, adm := range cs {
			extra := 0
			for _, c := range cs {
				if c.ReserveStart <= adm.ReserveEnd && c.SettleEnd >= adm.ReserveStart {
					extra += c.Actual - c.Estimate
				}
			}
			bound = max(bound, budgetTestLimit+extra)
		}
		if sum > bound {
			t.Errorf("%s: %d units spent, above the bound %d", u, sum, bound)
		}
		over = max(over, sum-budgetTestLimit)
	}
	t.Logf("largest excess over the limit: %d units", over)
}

// TestBudgetListpackPastTheBound: on a real redis-server, a user with 300
// charges in the window keeps a listpack of 128 members (the oldest spends
// merged), with the sum exact.
func TestBudgetListpackPastTheBound(t *testing.T) {
	rdb := client(t)
	l := newLimiter(t, rdb, limiter.DefaultConfig())
	b, err := l.Budget("llm", limiter.BudgetSettings{Limit: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := 0
	for i := 0; i < 300; i++ {
		n := 1 + i%1000
		want += n
		if d, err := b.Charge(ctx, "many", n); err != nil || !d.Allowed {
			t.Fatalf("charge %d: %+v, %v", i, d, err)
		}
	}
	key, _ := b.UserKey("many")
	enc, _ := rdb.ObjectEncoding(ctx, key).Result()
	card, _ := rdb.ZCard(ctx, key).Result()
	st, err := b.Peek(ctx, "many")
	if err != nil {
		t.Fatal(err)
	}
	if enc != "listpack" || card != 128 || st.Spent != want {
		t.Fatalf("after 300 charges: encoding %s, %d members, spent %d; want listpack, 128, %d", enc, card, st.Spent, want)
	}
	// One window after the newest spend, recorded at TIME rounded up to
	// the millisecond: at most 1 ms past the hour.
	if ttl, _ := rdb.PTTL(ctx, key).Result(); ttl <= 0 || ttl > time.Hour+time.Millisecond {
		t.Fatalf("TTL %v", ttl)
	}
}

// TestBudgetMemoryPerUser measures used_memory per user on a fresh
// redis-server at 50,000 users with 20 settled spends each, spread over
// the hour (the layout Reserve and Settle leave, written directly: a real
// hour cannot be waited out), beside 50,000 users with 20 requests in the
// per-message window (Import) in the same run. Peek reads every budget
// user back exactly, so the layout is the scripts' own.
func TestBudgetMemoryPerUser(t *testing.T) {
	skipIfShort(t) // -short keeps TestBudgetListpackPastTheBound
	rdb := privateClient(t)
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 10 * time.Second
	l, err := limiter.New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Budget("llm", limiter.BudgetSettings{Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const users = 50_000

	before := usedMemory(t, rdb)
	now := time.Now()
	err = concurrently(32, func(g int) error {
		rng := rand.New(rand.NewPCG(uint64(g), 1))
		for i := g; i < users; i += 32 {
			times := make([]time.Time, 20)
			for j := range times {
				times[j] = now.Add(-time.Duration(rng.Int64N(int64(time.Hour - time.Minute))))
			}
			if err := l.Import(ctx, fmt.Sprintf("user_%05d", i), times); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	window := float64(usedMemory(t, rdb)-before) / users

	before = usedMemory(t, rdb)
	sums, err := fillBudgets(ctx, rdb, b, users, 20)
	if err != nil {
		t.Fatal(err)
	}
	budget := float64(usedMemory(t, rdb)-before) / users
	for i := 0; i < users; i += 97 {
		u := "user_" + strconv.Itoa(i)
		st, err := b.Peek(ctx, u)
		if err != nil || st.Spent != sums[i] {
			t.Fatalf("%s: Peek %+v, %v; want %d spent", u, st, err, sums[i])
		}
	}
	key, _ := b.UserKey("user_1")
	enc, _ := rdb.ObjectEncoding(ctx, key).Result()
	t.Logf("50,000 users x 20 settled spends: %.1f bytes/user of used_memory (encoding %s); per-message window, 20 requests, same run: %.1f bytes/user; ratio %.2f (%s)",
		budget, enc, window, budget/window, runtime.Version())
	if enc != "listpack" {
		t.Errorf("budget encoding %q, want listpack", enc)
	}
	if budget > 2*window {
		t.Errorf("%.1f bytes per budget user, more than twice the window's %.1f", budget, window)
	}
}

// testClusterBudget: on a 3-master Cluster, a user's budget key sits in
// the slot of their window key (ids with braces included), and 32
// goroutines reserving and settling for 24 users stay exact: Redis holds
// what was admitted, never above the limit.
func testClusterBudget(t *testing.T, env *clusterEnv) {
	cfg := limiter.DefaultConfig()
	cfg.RedisTimeout = 5 * time.Second
	l := env.limiter(t, cfg)
	b, err := l.Budget("llm", limiter.BudgetSettings{Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	users := clusterUsers(24)
	for _, u := range users {
		bk, _ := b.UserKey(u)
		uk, _ := l.UserKeys(u)
		if env.slot(t, bk) != env.slot(t, uk[0]) {
			t.Errorf("user %q: budget key %q in slot %d, window key %q in slot %d", u, bk, env.slot(t, bk), uk[0], env.slot(t, uk[0]))
		}
	}
	ctx := context.Background()
	var mu sync.Mutex
	sums := map[string]int{}
	err = concurrently(32, func(g int) error {
		rng := rand.New(rand.NewPCG(uint64(g), 9))
		for i := 0; i < 40; i++ {
			u, est := users[rng.IntN(len(users))], 100+rng.IntN(900)
			d, err := b.Reserve(ctx, u, est)
			if err != nil {
				return err
			}
			if !d.Allowed {
				continue
			}
			if err := b.Settle(ctx, u, d.Token, est); err != nil {
				return err
			}
			mu.Lock()
			sums[u] += est
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		st, err := b.Peek(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if st.Spent != sums[u] || sums[u] > 5000 {
			t.Errorf("user %q: Peek %+v, admitted %d (limit 5000)", u, st, sums[u])
		}
	}
}
