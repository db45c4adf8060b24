// Package cli holds what Floodgate's commands share around their Run
// function: signal handling, one-line error messages, exit statuses and a
// quiet go-redis logger.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// ErrUsage marks a bad command line or configuration: exit status 2.
// Returned bare, it means the usage was printed already.
var ErrUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == ErrUsage }

// Usagef is a usage error (exit status 2) with a message.
func Usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// ExitCode is a command's exit status for err: 0 for nil, 2 for a usage
// error or flag.ErrHelp, 130 after an interrupt (context.Canceled), 1 for
// anything else.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage), errors.Is(err, flag.ErrHelp):
		return 2
	case errors.Is(err, context.Canceled):
		return 130
	}
	return 1
}

// OneLine keeps a message to one line: line breaks become "; ", runs of
// spaces one space.
func OneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// QuietLogger drops go-redis's own log lines (each failed dial): the
// commands report errors as values.
type QuietLogger struct{}

// Printf does nothing.
func (QuietLogger) Printf(context.Context, string, ...any) {}

// Main runs run with the program's arguments and a context that ends on
// SIGINT or SIGTERM, then exits with ExitCode. An error is printed on
// stderr as one line starting with name; bare ErrUsage, flag.ErrHelp and
// context.Canceled are not, as what they mean was said already.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	redis.SetLogger(QuietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if msg := Message(name, err); msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	os.Exit(ExitCode(err))
}

// Message is the line Main prints for err ("" for none).
func Message(name string, err error) string {
	switch {
	case err == nil, err == ErrUsage, err == flag.ErrHelp, err == context.Canceled:
		return ""
	}
	return name + ": " + OneLine(strings.TrimPrefix(err.Error(), name+": "))
}
