package main

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

// The wiring between the bot and the limiter's shared policies. Each
// policy is one small function, so the bot's flow (bot.handle) does not
// change when a policy is added.

// newClient builds the Redis client from Config.RedisURL.
func newClient(cfg limiter.Config) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, fmt.Errorf("FLOODGATE_REDIS_URL / REDIS_URL %s is not a redis:// or rediss:// URL", redactURL(cfg.RedisURL))
	}
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}

// wire sets the bot's shared policies and returns their names in the
// order a message meets them.
func wire(b *bot, l *limiter.Limiter, obs *metrics.Observer) ([]string, error) {
	policies := []string{"user"}
	ok, err := wireWiki(b, l)
	if err != nil {
		return nil, err
	}
	if ok {
		policies = append(policies, "wiki")
	}
	if ok, err = wireSlots(b, l, obs); err != nil {
		return nil, err
	}
	if ok {
		policies = append(policies, "slots")
	}
	if ok, err = wireBackoff(b, l, obs); err != nil {
		return nil, err
	}
	if ok {
		policies = append(policies, "backoff")
	}
	return policies, nil
}

// wireWiki limits "!wiki" lookups to the shared Wikipedia rate
// (FLOODGATE_API_RATES, seed: wikipedia_rate_limit: 1.0).
func wireWiki(b *bot, l *limiter.Limiter) (bool, error) {
	// Waiting for Limiter.APIBucket (branch bucketslots):
	//	bucket, err := l.APIBucket("wikipedia")
	//	b.wiki = bucket.Allow
	_ = l
	b.wiki = nil
	return false, nil
}

// wireSlots caps the users being answered at once, across replicas, at
// Config.MaxConcurrentUsers (seed: max_concurrent_users: 7).
func wireSlots(b *bot, l *limiter.Limiter, obs *metrics.Observer) (bool, error) {
	// Waiting for Limiter.Slots (branch bucketslots).
	_, _ = l, obs
	b.acquire = nil
	return false, nil
}

// wireBackoff picks the first LLM endpoint that is not backing off and
// reports each call's outcome (seed: llm_retry_delay,
// llm_backoff_multiplier, llm_backoff_max).
func wireBackoff(b *bot, l *limiter.Limiter, obs *metrics.Observer) (bool, error) {
	// Waiting for Limiter.Backoff (branch backoff).
	_, _ = l, obs
	b.pick, b.report = nil, nil
	return false, nil
}
