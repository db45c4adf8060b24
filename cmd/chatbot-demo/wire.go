package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

// The wiring between the bot and the limiter's shared policies. Each
// policy is one small function, so the bot's flow (bot.handle) does not
// change when a policy is added or left out.

// newClient builds the Redis client from Config.RedisURL.
func newClient(cfg limiter.Config) (redis.UniversalClient, error) {
	// Single node, Cluster or Sentinel; errors never show the password.
	return limiter.NewClient(cfg)
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
// (FLOODGATE_API_RATES, the original bot's wikipedia_rate_limit: 1.0). Without a
// "wikipedia" entry there, lookups are not limited.
func wireWiki(b *bot, l *limiter.Limiter) (bool, error) {
	if _, ok := l.Config().APIRates["wikipedia"]; !ok {
		return false, nil
	}
	bucket, err := l.Bucket("wikipedia", limiter.BucketSettings{})
	if err != nil {
		return false, err
	}
	b.wiki = bucket.Allow
	return true, nil
}

// wireSlots caps the users being answered at once, across replicas, at
// Config.MaxConcurrentUsers (the original bot's max_concurrent_users: 7); 0 turns the
// cap off.
func wireSlots(b *bot, l *limiter.Limiter, obs *metrics.Observer) (bool, error) {
	cfg := l.Config()
	if cfg.MaxConcurrentUsers == 0 {
		return false, nil
	}
	pool, err := l.Slots("llm", limiter.SlotsSettings{})
	if err != nil {
		return false, err
	}
	b.acquire = func(ctx context.Context, holder string) (func(context.Context), limiter.Decision, error) {
		lease, err := pool.TryAcquire(ctx, holder)
		if errors.Is(err, limiter.ErrNoSlot) {
			return nil, limiter.Decision{Reason: limiter.ReasonSlots}, nil
		}
		if err != nil {
			return nil, limiter.Decision{}, err
		}
		release := func(ctx context.Context) {
			if err := lease.Release(ctx); err != nil {
				b.log.Warn("releasing an LLM slot", "err", err)
			}
		}
		return release, limiter.Decision{Allowed: true, Degraded: lease.Degraded()}, nil
	}
	if obs != nil {
		if err := obs.WatchSlots(pool.Name(), pool.InUse); err != nil {
			return false, err
		}
	}
	return true, nil
}

// wireBackoff picks the first LLM endpoint that is not backing off and
// reports each call's outcome, so every replica stops calling a failing
// endpoint (the original bot's llm_retry_delay, llm_backoff_multiplier,
// llm_backoff_max).
func wireBackoff(b *bot, l *limiter.Limiter, obs *metrics.Observer) (bool, error) {
	bo, err := l.Backoff("llm", limiter.BackoffSettings{})
	if err != nil {
		return false, err
	}
	b.pick = func(ctx context.Context) (string, limiter.Decision, error) {
		return bo.Pick(ctx, endpoints...)
	}
	b.report = func(ctx context.Context, endpoint string, d limiter.Decision, callErr error) {
		var err error
		switch {
		case callErr == nil:
			err = bo.Success(ctx, endpoint)
		case ctx.Err() != nil || errors.Is(callErr, context.Canceled):
			// Not the endpoint's failure. A probe is handed back at once,
			// so it does not hold the endpoint for its whole lease.
			err = bo.Abandon(context.WithoutCancel(ctx), endpoint, d.Token)
		default:
			_, err = bo.Failure(ctx, endpoint)
		}
		if err != nil {
			b.log.Warn("reporting to the LLM backoff", "endpoint", endpoint, "err", err)
		}
	}
	if obs != nil {
		for _, ep := range endpoints {
			err := obs.WatchEndpoint(ep, func(ctx context.Context) (limiter.State, error) {
				s, err := bo.Status(ctx, ep)
				return s.State, err
			})
			if err != nil {
				return false, fmt.Errorf("watching %s: %w", ep, err)
			}
		}
	}
	return true, nil
}
