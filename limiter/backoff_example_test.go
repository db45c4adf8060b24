package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/floodgate/floodgate/limiter"
)

// exampleLLM is the Backoff the examples below share, its endpoints those
// of the model (ExampleBackoff_Pick shows how a Backoff is made).
func exampleLLM() (*miniredis.Miniredis, *limiter.Backoff) {
	mr, lim := exampleLimiter(limiter.DefaultConfig())
	return mr, check(lim.Backoff("llm", limiter.BackoffSettings{}))
}

// Do makes the call only when the endpoint may be used and reports how it
// went, so every replica stops calling an endpoint that fails; a caller who
// gives up mid-call is not counted against the endpoint.
func ExampleBackoff_Do() {
	mr, llm := exampleLLM()
	defer mr.Close()
	ctx := context.Background()
	local := "http://localhost:1234"
	// call stands in for the request to the model. A real one gives the
	// request its own timeout, shorter than ctx's, so that a hung endpoint
	// counts as failing: context.WithTimeout(ctx, 20*time.Second).
	call := func(reply string, err error) func(context.Context) error {
		return func(context.Context) error {
			if err == nil {
				fmt.Println("reply:", reply)
			}
			return err
		}
	}

	err := llm.Do(ctx, local, call("", errors.New("502 bad gateway")))
	fmt.Println("first call:", err)

	err = llm.Do(ctx, local, call("hello", nil))
	var open *limiter.BackoffOpenError
	if errors.As(err, &open) {
		fmt.Println("second call not made:", open.Decision.Reason, "for", open.Decision.RetryAfter)
	}

	mr.SetTime(time.Date(2026, 11, 26, 12, 0, 5, 0, time.UTC)) // the delay runs out
	err = llm.Do(ctx, local, call("hello", nil))
	fmt.Println("third call, the probe:", err)
	// Output:
	// first call: 502 bad gateway
	// second call not made: backoff for 5s
	// reply: hello
	// third call, the probe: <nil>
}

// Without Do: Check, then report. A caller holding the half-open probe that
// will not make its request hands the probe back, so another caller may
// probe at once.
func ExampleBackoff_Abandon() {
	mr, llm := exampleLLM()
	defer mr.Close()
	ctx := context.Background()
	local := "http://localhost:1234"
	if _, err := llm.Failure(ctx, local); err != nil {
		log.Fatal(err)
	}
	mr.SetTime(time.Date(2026, 11, 26, 12, 0, 5, 0, time.UTC)) // the delay runs out

	d, err := llm.Check(ctx, local)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("probe:", d.Probe)
	other, _ := llm.Check(ctx, local)
	fmt.Println("another caller:", other.Reason, "for", other.RetryAfter)

	// The user went away before the request was sent.
	if err := llm.Abandon(ctx, local, d.Token); err != nil {
		log.Fatal(err)
	}
	other, _ = llm.Check(ctx, local)
	fmt.Println("another caller, after Abandon: probe", other.Probe)
	// Output:
	// probe: true
	// another caller: probing for 30s
	// another caller, after Abandon: probe true
}
