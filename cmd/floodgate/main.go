// Command floodgate serves Floodgate's limits over HTTP, so bots in any
// language share them with Go replicas, and gives operators a look at the
// state Redis holds: `floodgate help` lists the commands, and
// docs/sidecar.md documents every route.
//
// Settings come from FLOODGATE_* variables (see the limiter package's
// Config) over an optional --config file holding the original bot's
// rate_limiting: block.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/floodgate/floodgate/internal/cli"
)

func main() { cli.Main("floodgate", Run) }

// command is one subcommand: serve and config run; the operator commands
// show what ops reads (ops.go), given the arguments wants describes.
type command struct {
	name, args, summary, help string
	run                       func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	ops                       opsFunc
	wants                     string
}

var commands []command

func init() {
	// Assigned here: the help command lists commands, which holds it.
	commands = []command{
		{"serve", "[flags]", "serve the HTTP API (docs/sidecar.md)", `
Serves the HTTP API of docs/sidecar.md on --addr (FLOODGATE_HTTP_ADDR,
default 127.0.0.1:8080). Listening beyond loopback requires
FLOODGATE_HTTP_TOKEN (at least 16 characters), then asked of every /v1 route
and /metrics as "Authorization: Bearer <token>". --addr unix:/PATH listens
on a unix socket (mode 0660; local, so no token is needed).

FLOODGATE_HTTP_TLS_CERT and FLOODGATE_HTTP_TLS_KEY (PEM files) serve HTTPS,
read again on SIGHUP or when either file changes; FLOODGATE_HTTP_CLIENT_CA
(a PEM CA file) requires client certificates it signed.

With no FLOODGATE_REDIS_URL or REDIS_URL it starts an embedded redis-server
on a free loopback port and says so: state is lost on exit and not shared
with other hosts; a demo, not production.

Also read: FLOODGATE_HTTP_MAX_WAIT (30s: cap of a wait's timeout_ms),
FLOODGATE_HTTP_MAX_WAITS (1024: requests waiting at once; more get 429),
FLOODGATE_HTTP_SHUTDOWN_TIMEOUT (10s: on SIGINT/SIGTERM, how long in-flight
requests may finish; waits end at once with their current answer),
FLOODGATE_HTTP_MAX_CONNS (1024, or the open-file limit less 64: connections
open at once), FLOODGATE_HTTP_MAX_NAMES (1024: slot pool names, and backoff
names, the server keeps state for), FLOODGATE_HTTP_IDLE_TIMEOUT (2m: a
kept-alive connection idle this long is closed).`, runServe, nil, ""},
		{"user", "[flags] USER", "show a user's state without counting a request", `
Reads the user's state from Redis without counting a request: what a
request now would get (remaining, retry after, reason), the cooldown left,
the window's entries and when the state resets.`, nil, showUser, "one USER"},
		{"reset", "[flags] USER", "forget a user's cooldown and window on every replica", `
Deletes the user's cooldown and window in Redis: their next request is
allowed on every replica (a replica that denied them a moment ago may
answer from its deny cache until that denial's retry-after).`, nil, resetUser, "one USER"},
		{"endpoints", "[flags] NAME ENDPOINT...", "show the backoff state of a breaker's endpoints", `
Shows each named endpoint's backoff state under breaker NAME (e.g. llm):
closed, half-open or open, consecutive open periods, failures, the current
delay, the time until half-open and whether a probe is out.`, nil, showEndpoints, "a breaker NAME and at least one ENDPOINT, e.g. floodgate endpoints llm http://gpu-1:8000"},
		{"slots", "[flags] NAME", "show a slot pool: size, in use, waiting", `
Shows the slot pool NAME: its size (FLOODGATE_MAX_CONCURRENT_USERS), the
slots held now across all replicas and the callers waiting.`, nil, showSlots, "one pool NAME"},
		{"budget", "[flags] NAME USER", "show a user's token budget: spent, reserved, left", `
Reads the user's state in the token budget NAME (the sidecar's is llm)
without changing it: units spent and reserved in the window, what is left
of FLOODGATE_USER_TOKEN_BUDGET per FLOODGATE_USER_TOKEN_WINDOW, when the
oldest spend ages out and when the window is empty.`, nil, showBudget, "a budget NAME and a USER, e.g. floodgate budget llm alice"},
		{"config", "[flags]", "print the effective settings (secrets hidden)", `
Prints the settings serve and the other commands would use: defaults, then
--config, then FLOODGATE_* variables. Passwords in the Redis URL and the
HTTP token are hidden. With --redis it also reads Redis's maxmemory-policy.`, runConfig, nil, ""},
		{"help", "[COMMAND]", "show this help, or a command's", "", nil, nil, ""},
	}
	for i, c := range commands {
		if c.ops != nil {
			commands[i].run = runOps(c, c.ops)
		}
	}
}

// find returns the command called name that runs, or nil.
func find(name string) *command {
	for i, c := range commands {
		if c.name == name && c.run != nil {
			return &commands[i]
		}
	}
	return nil
}

// Run is floodgate with args (without the program name), writing output to
// stdout and diagnostics to stderr. It returns when the command is done or,
// for serve, after ctx ends and the server has shut down.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		writeHelp(stderr)
		return cli.Usagef("no command given")
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 || rest[0] == "help" {
			writeHelp(stdout)
			return nil
		}
		c := find(rest[0])
		if c == nil {
			return cli.Usagef("help: no command %q (floodgate help lists them)", rest[0])
		}
		name, rest, stderr = c.name, []string{"--help"}, stdout
	}
	c := find(name)
	if c == nil {
		return cli.Usagef("no command %q (floodgate help lists them)", name)
	}
	if err := c.run(ctx, rest, stdout, stderr); !errors.Is(err, flag.ErrHelp) {
		return err
	}
	return nil
}

func writeHelp(w io.Writer) {
	fmt.Fprintln(w, "floodgate: Floodgate's shared rate limits over HTTP, and operator tools.")
	fmt.Fprintln(w, "\nUsage: floodgate COMMAND [flags] [args]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every command takes --help. Settings: FLOODGATE_* variables (FLOODGATE_REDIS_URL
or REDIS_URL names Redis) over an optional --config FILE holding a rate_limiting:
block. serve starts an embedded redis-server when no Redis is named (a demo).
`)
}

// newFlags builds a subcommand's flag set whose --help prints usage,
// summary and help to out.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("floodgate "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	c := find(name)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: floodgate %s %s\n\n%s%s.\n", c.name, c.args, strings.ToUpper(c.summary[:1]), c.summary[1:])
		if c.help != "" {
			fmt.Fprintln(out, "\n"+strings.TrimSpace(c.help))
		}
		fmt.Fprintln(out, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; a bad flag is a usage error, --help is
// flag.ErrHelp (exit 0 after the usage is printed).
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The flag package prints the error and usage itself; our error line
	// repeats only the reason.
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return cli.Usagef("%s: %v", fs.Name(), err)
}
