package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/floodgate/floodgate/limiter"
)

// A replica reads its settings from FLOODGATE_* variables (plain seconds
// as in config.yaml, or Go durations), connects with NewClient and builds
// the Limiter. Bad values are errors naming the variable.
func ExampleConfigFromEnv() {
	mr := check(miniredis.Run())
	defer mr.Close()
	mr.RequireAuth("s3cret")
	// Set by the deployment, not by code:
	os.Setenv("FLOODGATE_REDIS_URL", "redis://:s3cret@"+mr.Addr()+"/0")
	os.Setenv("FLOODGATE_USER_COOLDOWN", "30")
	os.Setenv("FLOODGATE_MAX_REQUESTS_PER_USER_HOUR", "5")
	defer os.Unsetenv("FLOODGATE_REDIS_URL")
	defer os.Unsetenv("FLOODGATE_USER_COOLDOWN")
	defer os.Unsetenv("FLOODGATE_MAX_REQUESTS_PER_USER_HOUR")

	cfg, err := limiter.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	rdb, err := limiter.NewClient(cfg) // redis://, rediss://, Cluster, Sentinel
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Close()
	lim, err := limiter.New(rdb, cfg)
	if err != nil {
		log.Fatal(err)
	}
	d, err := lim.Allow(context.Background(), "viewer42")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("cooldown", cfg.UserCooldown, "- allowed:", d.Allowed, "remaining:", d.Remaining)
	// Logs show the URL without its password.
	fmt.Println(strings.Contains(limiter.RedactURL(cfg.RedisURL), "s3cret"))

	os.Setenv("FLOODGATE_USER_COOLDOWN", "ten")
	_, err = limiter.ConfigFromEnv()
	fmt.Println(err)
	// Output:
	// cooldown 30s - allowed: true remaining: 4
	// false
	// limiter: invalid environment: FLOODGATE_USER_COOLDOWN: "ten" is neither seconds nor a Go duration such as 10s
}

// Wait suits queued work (a scheduled message) rather than chat replies:
// it sleeps until the user may go again, or fails at once when that would
// pass the context's deadline.
func ExampleLimiter_Wait() {
	mr := check(miniredis.Run()) // on the real clock: Wait really sleeps
	defer mr.Close()
	cfg := limiter.DefaultConfig()
	cfg.RedisURL = mr.Addr()
	cfg.UserCooldown = 100 * time.Millisecond
	rdb := check(limiter.NewClient(cfg))
	defer rdb.Close()
	lim := check(limiter.New(rdb, cfg))
	ctx := context.Background()

	start := time.Now()
	for range 2 {
		d, err := lim.Wait(ctx, "scheduler")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("sent,", d.Remaining, "left this hour")
	}
	fmt.Println("waited out the cooldown:", time.Since(start) >= cfg.UserCooldown)

	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	d, err := lim.Wait(short, "scheduler")
	fmt.Println(d.Reason, errors.Is(err, context.DeadlineExceeded))
	// Output:
	// sent, 19 left this hour
	// sent, 18 left this hour
	// waited out the cooldown: true
	// cooldown true
}
