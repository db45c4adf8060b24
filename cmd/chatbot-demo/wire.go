package main

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	for _, p := range []struct {
		name string
		wire func() (bool, error)
	}{
		{"wiki", func() (bool, error) { return wireWiki(b, l) }},
		{"slots", func() (bool, error) { return wireSlots(b, l, obs) }},
		{"budget", func() (bool, error) { return wireBudget(b, l) }},
		{"backoff", func() (bool, error) { return wireBackoff(b, l, obs) }},
	} {
		ok, err := p.wire()
		if err != nil {
			return nil, err
		}
		if ok {
			policies = append(policies, p.name)
		}
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

// wireBudget reserves each LLM call's estimate (prompt + max tokens) of
// the user's token budget "llm" and settles what the call cost, or
// cancels when it failed or never happened, so no user spends more than
// FLOODGATE_USER_TOKEN_BUDGET tokens per FLOODGATE_USER_TOKEN_WINDOW
// across replicas; 0 leaves the budget out.
func wireBudget(b *bot, l *limiter.Limiter) (bool, error) {
	if l.Config().UserTokenBudget == 0 {
		return false, nil
	}
	llm, err := l.Budget("llm", limiter.BudgetSettings{})
	if err != nil {
		return false, err
	}
	b.reserve = func(ctx context.Context, user string, estimate int) (func(context.Context, int, error), limiter.Decision, error) {
		d, err := llm.Reserve(ctx, user, estimate)
		if err != nil || !d.Allowed {
			return nil, d, err
		}
		return func(ctx context.Context, tokens int, callErr error) {
			// Even when the message's context ended: a reservation left
			// unsettled would count its whole estimate.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			var err error
			if callErr != nil {
				err = llm.Cancel(ctx, user, d.Token)
			} else {
				err = llm.Settle(ctx, user, d.Token, tokens)
			}
			if err != nil {
				b.log.Warn("settling an LLM token reservation", "err", err)
			}
		}, d, nil
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
