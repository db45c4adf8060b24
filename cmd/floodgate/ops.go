package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/limiter"
)

// opsTimeout bounds an operator command's Redis calls.
const opsTimeout = 10 * time.Second

// opsFunc is what an operator command reads from Redis, given its
// arguments: v, printed by --json, or text.
type opsFunc func(ctx context.Context, lim *limiter.Limiter, args []string) (v any, text string, err error)

// runOps runs the operator command c: it parses the flags, checks the
// argument count against c.args (before anything is read or dialled),
// connects and prints what c.ops reads.
func runOps(c command, ops opsFunc) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		var sf settingsFlags
		fs := newFlags(c.name, stderr)
		sf.register(fs)
		asJSON := fs.Bool("json", false, "print JSON instead of text")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		want := strings.Fields(strings.TrimPrefix(c.args, "[flags] "))
		if n := fs.NArg(); n < len(want) || n > len(want) && !strings.HasSuffix(c.args, "...") {
			return cli.Usagef("%s takes %s; got %d arguments", c.name, c.wants, n)
		}
		cfg, err := sf.load()
		if err != nil {
			return err
		}
		return onRedis(ctx, cfg, func(ctx context.Context, lim *limiter.Limiter) error {
			v, text, err := ops(ctx, lim, fs.Args())
			switch {
			case err != nil:
				return err
			case *asJSON:
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			_, err = io.WriteString(stdout, text)
			return err
		})
	}
}

// onRedis runs f, with a context bounded by opsTimeout, on a Limiter on
// cfg's Redis. Operator commands never start an embedded server: an empty
// one would show nothing.
func onRedis(ctx context.Context, cfg limiter.Config, f func(context.Context, *limiter.Limiter) error) error {
	if cfg.RedisURL == "" {
		return cli.Usagef("no Redis: set FLOODGATE_REDIS_URL or REDIS_URL to the Redis your bots use")
	}
	// Operators look at the shared state, not at this process's cache.
	cfg.LocalCacheSize = 0
	lim, rdb, err := newLimiter(cfg, func(o *redis.UniversalOptions) { o.PoolSize = 2 })
	if err != nil {
		return err
	}
	defer rdb.Close()
	defer evictionChecked(lim)
	ctx, cancel := context.WithTimeout(ctx, opsTimeout)
	defer cancel()
	return f(ctx, lim)
}

// evictionChecked waits, at most RedisTimeout, for the eviction check New
// starts in the background, so closing the client does not cut it off
// mid-command.
func evictionChecked(lim *limiter.Limiter) {
	for end := time.Now().Add(lim.Config().RedisTimeout); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if _, err := lim.EvictionRisk(); !errors.Is(err, limiter.ErrEvictionUnchecked) {
			return
		}
	}
}

// opError words a Redis error for the operator, without secrets.
func opError(what string, err error) error {
	msg := errText(err)
	if limiter.IsUnavailable(err) {
		return fmt.Errorf("%s: Redis did not answer: %s", what, msg)
	}
	return fmt.Errorf("%s: %s", what, msg)
}

func showUser(ctx context.Context, lim *limiter.Limiter, args []string) (any, string, error) {
	user, cfg := args[0], lim.Config()
	st, err := lim.Peek(ctx, user)
	if err != nil {
		return nil, "", opError(fmt.Sprintf("user %q", user), err)
	}
	verdict := "a request now would be allowed"
	if st.RetryAfter > 0 {
		verdict = fmt.Sprintf("a request now would be denied (%s) for %v", st.Reason, st.RetryAfter)
	}
	remaining := fmt.Sprintf("%d of %d per %v", st.Remaining, cfg.MaxRequestsPerUserHour, cfg.UserWindow)
	if st.Remaining == limiter.Unlimited {
		remaining = "unlimited (no window)"
	}
	return newPeekBody(user, st), fmt.Sprintf(`user %q: %s
  remaining       %s
  retry after     %v
  reason          %s
  cooldown left   %v (cooldown %v)
  window entries  %d
  reset after     %v
`, user, verdict, remaining, st.RetryAfter, st.Reason, st.CooldownLeft, cfg.UserCooldown, st.Entries, st.ResetAfter), nil
}

func resetUser(ctx context.Context, lim *limiter.Limiter, args []string) (any, string, error) {
	user := args[0]
	if err := lim.Reset(ctx, user); err != nil {
		return nil, "", opError(fmt.Sprintf("reset %q", user), err)
	}
	return map[string]any{"user": user, "reset": true}, fmt.Sprintf("user %q reset: cooldown and window cleared on every replica\n", user), nil
}

func showEndpoints(ctx context.Context, lim *limiter.Limiter, args []string) (any, string, error) {
	name, endpoints := args[0], args[1:]
	b, err := lim.Backoff(name, limiter.BackoffSettings{})
	if err != nil {
		return nil, "", cli.Usagef("%s", errText(err))
	}
	var rows []endpointBody
	var text strings.Builder
	for _, ep := range endpoints {
		st, err := b.Status(ctx, ep)
		if err != nil {
			return nil, "", opError(fmt.Sprintf("endpoint %q", ep), err)
		}
		row := newEndpointBody(st)
		row.Endpoint = ep
		rows = append(rows, row)
		fmt.Fprintf(&text, "%s %q: %s", name, ep, st.State)
		if st.RetryAfter > 0 {
			fmt.Fprintf(&text, " (retry after %v)", st.RetryAfter)
		}
		fmt.Fprintf(&text, "\n  opens %d, failures %d, delay %v, probe out %v\n", st.Opens, st.Failures, st.Delay, st.Probing)
	}
	return rows, text.String(), nil
}

func showSlots(ctx context.Context, lim *limiter.Limiter, args []string) (any, string, error) {
	name := args[0]
	pool, err := lim.Slots(name, limiter.SlotsSettings{})
	if err != nil {
		return nil, "", cli.Usagef("%s", errText(err))
	}
	inUse, waiting, err := pool.Usage(ctx)
	if err != nil {
		return nil, "", opError(fmt.Sprintf("pool %q", name), err)
	}
	return poolBody{Pool: name, Size: pool.Size(), InUse: inUse, Waiting: waiting},
		fmt.Sprintf("pool %q: %d of %d slots in use, %d waiting\n", name, inUse, pool.Size(), waiting), nil
}

func showBudget(ctx context.Context, lim *limiter.Limiter, args []string) (any, string, error) {
	name, user := args[0], args[1]
	b, err := lim.Budget(name, limiter.BudgetSettings{})
	if err != nil {
		return nil, "", cli.Usagef("%s", errText(err))
	}
	st, err := b.Peek(ctx, user)
	if err != nil {
		return nil, "", opError(fmt.Sprintf("user %q in budget %q", user, name), err)
	}
	limit, window := b.Limit()
	return newBudgetBody(b, user, st), fmt.Sprintf(`user %q in budget %q: %d of %d units left per %v
  spent            %d
  reserved         %d (%d reservations in flight)
  oldest ages out  %v
  reset after      %v
`, user, name, st.Remaining, limit, window, st.Spent, st.Reserved, st.Reservations, st.OldestAgesOut, st.ResetAfter), nil
}

// runConfig prints the settings; with --redis, also what Redis's
// maxmemory-policy means for the limits, as /readyz says it (without the
// flag it contacts nothing, so it works where Redis is not reachable).
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var sf settingsFlags
	fs := newFlags("config", stderr)
	sf.register(fs)
	withRedis := fs.Bool("redis", false, "also connect to Redis and show its eviction risk (maxmemory-policy)")
	cfg, set, err := sf.parseAll(fs, args)
	if err != nil {
		return err
	}
	writeConfig(stdout, cfg, set)
	if sf.config != "" {
		fmt.Fprintf(stdout, "\n(from %s under the environment; cleanup_interval is not needed: every key has a TTL)\n", sf.config)
	}
	if !*withRedis {
		return nil
	}
	return onRedis(ctx, cfg, func(ctx context.Context, lim *limiter.Limiter) error {
		e, err := lim.CheckEviction(ctx)
		if err != nil {
			return opError("eviction check", err)
		}
		risk := "safe: Redis never evicts Floodgate's keys"
		if e.Unsafe {
			risk = "UNSAFE: " + strings.TrimPrefix(e.Warning(), "limiter: ")
		}
		_, err = fmt.Fprintf(stdout, "\n%-40s %s (%d keys evicted so far)\n%-40s %s\n", "maxmemory-policy", e.Policy, e.EvictedKeys, "eviction risk", risk)
		return err
	})
}
