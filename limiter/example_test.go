package limiter_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
)

// exampleRedis stands in for a real Redis: an in-process miniredis whose
// clock is frozen, so the outputs below are exact.
func exampleRedis() (*miniredis.Miniredis, redis.UniversalClient) {
	mr, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	mr.SetTime(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	return mr, redis.NewClient(&redis.Options{Addr: mr.Addr()})
}

// exampleLimiter builds a Limiter with cfg on exampleRedis, the way
// ExampleConfigFromEnv shows for a real deployment.
func exampleLimiter(cfg limiter.Config) (*miniredis.Miniredis, *limiter.Limiter) {
	mr, rdb := exampleRedis()
	return mr, check(limiter.New(rdb, cfg))
}

// check stops an example at a setup error; a real bot handles it.
func check[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}

// A bot checks every chat message: the defaults allow one message
// per 10 s and 20 per hour for each user, shared by every replica.
func ExampleLimiter_Allow() {
	cfg := limiter.DefaultConfig()
	// The local deny cache counts down on this process's own clock, which
	// the frozen example clock would fool; a real bot keeps it on.
	cfg.LocalCacheSize = 0
	mr, lim := exampleLimiter(cfg)
	defer mr.Close()
	ctx := context.Background()
	for _, at := range []time.Duration{0, 4 * time.Second, 10 * time.Second} {
		mr.SetTime(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Add(at))
		d, err := lim.Allow(ctx, "viewer42")
		if err != nil {
			log.Fatal(err)
		}
		if d.Allowed {
			fmt.Printf("+%v answered, %d left this hour\n", at, d.Remaining)
		} else {
			fmt.Printf("+%v held back (%s), retry in %v\n", at, d.Reason, d.RetryAfter)
		}
	}
	// Output:
	// +0s answered, 19 left this hour
	// +4s held back (cooldown), retry in 6s
	// +10s answered, 18 left this hour
}

// Many users at once, one round trip: each decision is still atomic.
func ExampleLimiter_AllowMany() {
	mr, lim := exampleLimiter(limiter.DefaultConfig())
	defer mr.Close()
	ds, err := lim.AllowMany(context.Background(), []string{"ann", "bob", "ann"})
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range ds {
		fmt.Println(d.Allowed, d.Reason)
	}
	// Output:
	// true none
	// true none
	// false cooldown
}

// The bot's fallback from a local model to OpenAI: Pick gives the first
// endpoint not backing off; report the outcome so every replica learns.
func ExampleBackoff_Pick() {
	mr, lim := exampleLimiter(limiter.DefaultConfig())
	defer mr.Close()
	ctx := context.Background()
	llm := check(lim.Backoff("llm", limiter.BackoffSettings{}))
	local, openai := "http://localhost:1234", "https://api.openai.com"

	d, _ := llm.Failure(ctx, local) // the local model timed out
	fmt.Println("local backs off for", d.RetryAfter)
	ep, _, err := llm.Pick(ctx, local, openai)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("next request goes to", ep)
	// Output:
	// local backs off for 5s
	// next request goes to https://api.openai.com
}

// External APIs: at most igdb's 4 requests per second across replicas.
func ExampleBucket_Allow() {
	mr, lim := exampleLimiter(limiter.DefaultConfig())
	defer mr.Close()
	igdb := check(lim.Bucket("igdb", limiter.BucketSettings{}))
	for i := 0; i < 2; i++ {
		d, err := igdb.Allow(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(d.Allowed, d.RetryAfter)
	}
	// Output:
	// true 0s
	// false 250ms
}

// At most 7 users on the model at once, across replicas; a slot is a
// lease, so a crashed replica's slots come back by themselves.
func ExampleSlots_TryAcquire() {
	mr, lim := exampleLimiter(limiter.DefaultConfig())
	defer mr.Close()
	ctx := context.Background()
	pool := check(lim.Slots("llm", limiter.SlotsSettings{Size: 2})) // lease: Config.SlotLease
	a, _ := pool.TryAcquire(ctx, "ann")
	_, _ = pool.TryAcquire(ctx, "bob")
	_, err := pool.TryAcquire(ctx, "cat")
	fmt.Println("third user:", err)
	fmt.Println("release:", a.Release(ctx))
	fmt.Println("release again:", a.Release(ctx) != nil)
	// Output:
	// third user: limiter: no free slot in pool "llm" (size 2)
	// release: <nil>
	// release again: true
}
