// Command chatbot-demo replays a synthetic Twitch-style chat through
// Floodgate, the way several replicas of a chat bot share one Redis.
//
// Without arguments it starts an embedded redis-server (unless
// FLOODGATE_REDIS_URL or REDIS_URL names one), runs DEMO_REPLICAS replicas
// of the bot as separate processes against it, splits the chat among them
// round-robin like a load balancer, and prints what each replica answered,
// what it held back and why, and checks that prove the limits were shared:
//
//	go run ./cmd/chatbot-demo
//
// With --replica it is one replica, configured by the environment only
// (this is what docker-compose.yml runs three of):
//
//	FLOODGATE_*            the limiter's settings (limiter.ConfigFromEnv); unset
//	                       time settings take the demo's compressed defaults
//	FLOODGATE_REDIS_URL    or REDIS_URL: the shared Redis
//	DEMO_REPLICA_ID        this replica's number, 1..DEMO_REPLICAS
//	DEMO_REPLICAS          how many replicas share the chat (3)
//	DEMO_SEED              the chat's random seed (1)
//	DEMO_MESSAGES          messages in the whole chat (2000)
//	DEMO_DURATION          how long the replay lasts (20s)
//	DEMO_METRICS_ADDR      serve Prometheus /metrics here (e.g. :9100)
//	DEMO_LINGER            keep serving /metrics this long after the replay
//	DEMO_LOG_FORMAT        json (replica default) or text
//	DEMO_LOG_LEVEL         debug, info (default), warn or error
//	DEMO_OUTPUT            table (default) or json: the launcher's report; a
//	                       replica with json prints its summary as one line
//
// Replicas started on their own agree on a run id and a start time through
// Redis, so each run uses fresh keys (expiring after
// FLOODGATE_MAX_IDLE_TIME), and pool their summaries there: the last one to
// finish prints the report for all.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/floodgate/floodgate/internal/cli"
)

// Exit status 130 when interrupted (the replicas said so in their logs),
// 2 for a bad command line (after the usage text), else 1 with the error.
func main() { cli.Main("chatbot-demo", Run) }

// errUsage is returned after the usage text has been printed.
var errUsage = cli.ErrUsage

// Run is the whole program: the launcher by default, one replica with
// --replica. Its configuration comes from the environment.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "soak" {
		return runSoak(ctx, args[1:], stdout, stderr) // soak.go
	}
	fs := flag.NewFlagSet("chatbot-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	replica := fs.Bool("replica", false, "run one replica, configured by the environment (DEMO_REPLICA_ID, REDIS_URL, FLOODGATE_*)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chatbot-demo: unexpected argument %q; settings come from the environment\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	env, err := readEnv(os.Getenv)
	if err != nil {
		return err
	}
	if *replica {
		return runReplica(ctx, env, stdout, stderr)
	}
	return launch(ctx, env, stdout, stderr)
}

const usage = `chatbot-demo replays a synthetic chat (regular viewers, spammers, a raid)
through Floodgate, with several bot replicas sharing one Redis.

  chatbot-demo             start DEMO_REPLICAS (3) replicas as processes against
                           FLOODGATE_REDIS_URL / REDIS_URL, or an embedded
                           redis-server, and print what they answered and why
                           others were held back
  chatbot-demo --replica   run one replica (DEMO_REPLICA_ID of DEMO_REPLICAS)

Settings come from the environment: FLOODGATE_* (the limiter), REDIS_URL,
DEMO_REPLICA_ID, DEMO_REPLICAS, DEMO_SEED, DEMO_MESSAGES, DEMO_DURATION,
DEMO_METRICS_ADDR, DEMO_LINGER, DEMO_LOG_FORMAT, DEMO_LOG_LEVEL, DEMO_OUTPUT.

`
