package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// Acquire waits its turn for a slot; a long answer refreshes its lease so
// the slot is not taken back while still in use.
func ExampleSlots_Acquire() {
	mr, lim := exampleLimiter(limiter.DefaultConfig())
	defer mr.Close()
	ctx := context.Background()
	pool := check(lim.Slots("llm", limiter.SlotsSettings{Size: 1}))
	ann := check(pool.TryAcquire(ctx, "ann"))
	_, err := pool.TryAcquire(ctx, "bob")
	var full *limiter.NoSlotError
	if errors.As(err, &full) {
		fmt.Println("bob may retry in", full.RetryAfter)
	}

	got := make(chan *limiter.Lease)
	go func() {
		lease, err := pool.Acquire(ctx, "bob") // queues until ann is done
		if err != nil {
			log.Fatal(err)
		}
		got <- lease
	}()
	if err := ann.Release(ctx); err != nil {
		log.Fatal(err)
	}
	bob := <-got
	for chunk := 0; chunk < 3; chunk++ {
		// ... stream part of the answer, then keep the slot:
		if err := bob.Refresh(ctx); err != nil {
			log.Fatal(err) // ErrLeaseLost: the slot is gone; stop
		}
	}
	fmt.Println("bob answered, release:", bob.Release(ctx))
	// Output:
	// bob may retry in 30s
	// bob answered, release: <nil>
}

// A sidecar grants a lease and hands its token to a client; whichever
// replica the client calls back rebuilds the lease to release it.
func ExampleLease_Token() {
	mr, rdb := exampleRedis()
	defer mr.Close()
	ctx := context.Background()
	replica := func() *limiter.Slots {
		lim := check(limiter.New(rdb, limiter.DefaultConfig()))
		return check(lim.Slots("llm", limiter.SlotsSettings{}))
	}
	a, b := replica(), replica()
	lease, err := a.TryAcquire(ctx, "ann")
	if err != nil {
		log.Fatal(err)
	}
	token := lease.Token() // sent to the client, e.g. in a JSON reply

	back, err := b.Lease(token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(back.Holder(), back.Release(ctx))
	_, err = b.Lease("not-a-token")
	fmt.Println(errors.Is(err, limiter.ErrInvalidArgument))
	// Output:
	// ann <nil>
	// true
}

// A lease lasts Config.SlotLease (30 s) from its grant or last Refresh: a
// long answer refreshes it, and a replica that stopped refreshing (it
// crashed, or hung) loses the slot to the next user.
func ExampleLease_Refresh() {
	mr, lim := exampleLimiter(limiter.DefaultConfig())
	defer mr.Close()
	ctx := context.Background()
	pool := check(lim.Slots("llm", limiter.SlotsSettings{Size: 1}))
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	after := func(d time.Duration) { now = now.Add(d); mr.SetTime(now); mr.FastForward(d) }

	ann := check(pool.TryAcquire(ctx, "ann"))
	after(20 * time.Second)
	fmt.Println("refresh at 20s:", ann.Refresh(ctx))
	after(20 * time.Second) // 40 s after the grant, 20 s after the refresh
	n, _ := pool.InUse(ctx)
	fmt.Println("in use at 40s:", n)
	after(11 * time.Second) // 31 s without a refresh: the lease lapsed
	err := ann.Refresh(ctx)
	fmt.Println("refresh at 51s:", errors.Is(err, limiter.ErrLeaseLost))
	_, err = pool.TryAcquire(ctx, "bob")
	fmt.Println("bob gets the slot:", err == nil)
	// Output:
	// refresh at 20s: <nil>
	// in use at 40s: 1
	// refresh at 51s: true
	// bob gets the slot: true
}
