package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/limiter"
)

// opsTimeout bounds an operator command's Redis calls.
const opsTimeout = 10 * time.Second

// opsFlags are the flags of the operator commands.
type opsFlags struct {
	settingsFlags
	json bool
}

func (o *opsFlags) register(name string, stderr io.Writer) *flag.FlagSet {
	fs := newFlags(name, stderr)
	o.settingsFlags.register(fs)
	fs.BoolVar(&o.json, "json", false, "print JSON instead of text")
	return fs
}

// connect builds a Limiter on the configured Redis. Operator commands
// never start an embedded server: an empty one would show nothing.
func connect(cfg limiter.Config) (*limiter.Limiter, func(), error) {
	if cfg.RedisURL == "" {
		return nil, nil, cli.Usagef("no Redis: set FLOODGATE_REDIS_URL or REDIS_URL to the Redis your bots use")
	}
	// Operators look at the shared state, not at this process's cache.
	cfg.LocalCacheSize = 0
	rdb, err := limiter.NewClient(cfg, limiter.WithRedisOptions(func(o *redis.UniversalOptions) {
		o.PoolSize = 2
	}))
	if err != nil {
		return nil, nil, cli.Usagef("%s", errText(err))
	}
	lim, err := limiter.New(rdb, cfg)
	if err != nil {
		rdb.Close()
		return nil, nil, cli.Usagef("%s", errText(err))
	}
	return lim, func() { rdb.Close() }, nil
}

// opError words a Redis error for the operator, without secrets.
func opError(what string, err error) error {
	msg := errText(err)
	if limiter.IsUnavailable(err) {
		return fmt.Errorf("%s: Redis did not answer: %s", what, msg)
	}
	return fmt.Errorf("%s: %s", what, msg)
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// opsCommand is an operator command ready to run: its arguments, the
// effective settings and a Limiter on the configured Redis.
type opsCommand struct {
	args  []string
	json  bool
	cfg   limiter.Config
	lim   *limiter.Limiter
	close func()
}

// startOps parses an operator command's flags, checks its argument count
// with nargs (before anything is read or dialled), loads the settings and
// connects. The context it returns is bounded by opsTimeout; c.close ends
// it and the connection.
func startOps(ctx context.Context, name string, args []string, stderr io.Writer, nargs func(n int) error) (context.Context, *opsCommand, error) {
	var o opsFlags
	fs := o.register(name, stderr)
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	if err := nargs(fs.NArg()); err != nil {
		return nil, nil, err
	}
	cfg, err := o.load()
	if err != nil {
		return nil, nil, err
	}
	lim, closeFn, err := connect(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opsTimeout)
	return ctx, &opsCommand{args: fs.Args(), json: o.json, cfg: cfg, lim: lim, close: func() { cancel(); closeFn() }}, nil
}

// oneArg is startOps's check for a command that takes one argument.
func oneArg(cmd, what string) func(n int) error {
	return func(n int) error {
		if n != 1 {
			return cli.Usagef("%s takes one %s, got %d arguments", cmd, what, n)
		}
		return nil
	}
}

func runUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, c, err := startOps(ctx, "user", args, stderr, oneArg("user", "USER"))
	if err != nil {
		return err
	}
	defer c.close()
	user, cfg := c.args[0], c.cfg
	st, err := c.lim.Peek(ctx, user)
	if err != nil {
		return opError(fmt.Sprintf("user %q", user), err)
	}
	if c.json {
		return writeJSONOut(stdout, newPeekBody(user, st))
	}
	verdict := "a request now would be allowed"
	if st.RetryAfter > 0 {
		verdict = fmt.Sprintf("a request now would be denied (%s) for %v", st.Reason, st.RetryAfter)
	}
	remaining := fmt.Sprint(st.Remaining)
	if st.Remaining == limiter.Unlimited {
		remaining = "unlimited (no window)"
	} else {
		remaining += fmt.Sprintf(" of %d per %v", cfg.MaxRequestsPerUserHour, cfg.UserWindow)
	}
	fmt.Fprintf(stdout, "user %q: %s\n", user, verdict)
	fmt.Fprintf(stdout, "  remaining       %s\n", remaining)
	fmt.Fprintf(stdout, "  retry after     %v\n", st.RetryAfter)
	fmt.Fprintf(stdout, "  reason          %s\n", st.Reason)
	fmt.Fprintf(stdout, "  cooldown left   %v (cooldown %v)\n", st.CooldownLeft, cfg.UserCooldown)
	fmt.Fprintf(stdout, "  window entries  %d\n", st.Entries)
	fmt.Fprintf(stdout, "  reset after     %v\n", st.ResetAfter)
	return nil
}

func runReset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, c, err := startOps(ctx, "reset", args, stderr, oneArg("reset", "USER"))
	if err != nil {
		return err
	}
	defer c.close()
	user := c.args[0]
	if err := c.lim.Reset(ctx, user); err != nil {
		return opError(fmt.Sprintf("reset %q", user), err)
	}
	if c.json {
		return writeJSONOut(stdout, map[string]any{"user": user, "reset": true})
	}
	fmt.Fprintf(stdout, "user %q reset: cooldown and window cleared on every replica\n", user)
	return nil
}

func runEndpoints(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, c, err := startOps(ctx, "endpoints", args, stderr, func(n int) error {
		if n < 2 {
			return cli.Usagef("endpoints takes a breaker NAME and at least one ENDPOINT, e.g. floodgate endpoints llm http://gpu-1:8000")
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.close()
	name, endpoints := c.args[0], c.args[1:]
	b, err := c.lim.Backoff(name, limiter.BackoffSettings{})
	if err != nil {
		return cli.Usagef("%s", errText(err))
	}
	var rows []endpointBody
	for _, ep := range endpoints {
		st, err := b.Status(ctx, ep)
		if err != nil {
			return opError(fmt.Sprintf("endpoint %q", ep), err)
		}
		if c.json {
			rows = append(rows, newEndpointBody(ep, st))
			continue
		}
		fmt.Fprintf(stdout, "%s %q: %s", name, ep, st.State)
		if st.RetryAfter > 0 {
			fmt.Fprintf(stdout, " (retry after %v)", st.RetryAfter)
		}
		fmt.Fprintf(stdout, "\n  opens %d, failures %d, delay %v, probe out %v\n", st.Opens, st.Failures, st.Delay, st.Probing)
	}
	if c.json {
		return writeJSONOut(stdout, rows)
	}
	return nil
}

func runSlots(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, c, err := startOps(ctx, "slots", args, stderr, oneArg("slots", "pool NAME"))
	if err != nil {
		return err
	}
	defer c.close()
	name := c.args[0]
	pool, err := c.lim.Slots(name, limiter.SlotsSettings{})
	if err != nil {
		return cli.Usagef("%s", errText(err))
	}
	inUse, waiting, err := pool.Usage(ctx)
	if err != nil {
		return opError(fmt.Sprintf("pool %q", name), err)
	}
	if c.json {
		return writeJSONOut(stdout, poolBody{Pool: name, Size: pool.Size(), InUse: inUse, Waiting: waiting})
	}
	fmt.Fprintf(stdout, "pool %q: %d of %d slots in use, %d waiting\n", name, inUse, pool.Size(), waiting)
	return nil
}

func runBudget(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, c, err := startOps(ctx, "budget", args, stderr, func(n int) error {
		if n != 2 {
			return cli.Usagef("budget takes a budget NAME and a USER, e.g. floodgate budget llm alice; got %d arguments", n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.close()
	name, user := c.args[0], c.args[1]
	b, err := c.lim.Budget(name, limiter.BudgetSettings{})
	if err != nil {
		return cli.Usagef("%s", errText(err))
	}
	st, err := b.Peek(ctx, user)
	if err != nil {
		return opError(fmt.Sprintf("user %q in budget %q", user, name), err)
	}
	if c.json {
		return writeJSONOut(stdout, newBudgetBody(b, user, st))
	}
	limit, window := b.Limit()
	fmt.Fprintf(stdout, "user %q in budget %q: %d of %d units left per %v\n", user, name, st.Remaining, limit, window)
	fmt.Fprintf(stdout, "  spent            %d\n", st.Spent)
	fmt.Fprintf(stdout, "  reserved         %d (%d reservations in flight)\n", st.Reserved, st.Reservations)
	fmt.Fprintf(stdout, "  oldest ages out  %v\n", st.OldestAgesOut)
	fmt.Fprintf(stdout, "  reset after      %v\n", st.ResetAfter)
	return nil
}

func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var sf settingsFlags
	fs := newFlags("config", stderr)
	sf.register(fs)
	cfg, set, err := sf.parseAll(fs, args)
	if err != nil {
		return err
	}
	writeConfig(stdout, cfg, &set)
	if sf.config != "" {
		fmt.Fprintf(stdout, "\n(from %s under the environment; cleanup_interval is not needed: every key has a TTL)\n", sf.config)
	}
	return nil
}
