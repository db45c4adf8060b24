package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// The simulated LLM: two endpoints, a local server that is fast but flaky
// (and down for a stretch of the stream) and a remote API that is slower
// but steady. Nothing leaves the process.

const (
	endpointLocal  = "http://localhost:1234"
	endpointRemote = "https://api.openai.com"
)

// endpoints in the order the bot prefers them.
var endpoints = []string{endpointLocal, endpointRemote}

// fakeLLM decides each call from the message's sequence number and the
// seed, so a message fails or succeeds the same way in every run.
type fakeLLM struct {
	seed     uint64
	duration time.Duration // the stream's duration, for the outage window
	// scale shrinks every latency (tests use a tiny one).
	scale float64
}

// errLLM is a failed generation.
var errLLM = errors.New("llm: generation failed")

// outage reports whether the local endpoint is down at stream offset at:
// from 25% to 40% of the stream, just before the raid.
func (f *fakeLLM) outage(at time.Duration) bool {
	from, to := f.outageWindow()
	return at >= from && at < to
}

func (f *fakeLLM) outageWindow() (from, to time.Duration) {
	return f.duration * 25 / 100, f.duration * 40 / 100
}

// maxTokens caps an answer, as an LLM request's max_tokens does.
const maxTokens = 300

// promptTokens is m's prompt in tokens: a system prompt and about four
// characters a token.
func promptTokens(m message) int { return 40 + len(m.Text)/4 }

// estimate is what a call for m may cost: the prompt and the longest
// answer. An answer never costs more.
func estimate(m message) int { return promptTokens(m) + maxTokens }

// generate "answers" m on endpoint, taking a while, and says how many
// tokens the call cost (prompt and answer, as an LLM's usage does); it
// fails like the endpoint would, costing nothing.
func (f *fakeLLM) generate(ctx context.Context, endpoint string, m message) (reply string, tokens int, err error) {
	rng := rand.New(rand.NewPCG(f.seed, uint64(m.Seq)))
	var took time.Duration
	var fail bool
	switch endpoint {
	case endpointLocal:
		took = 20*time.Millisecond + time.Duration(rng.IntN(50))*time.Millisecond
		fail = f.outage(m.At) || rng.IntN(100) < 3
		if f.outage(m.At) {
			took = 5 * time.Millisecond // connection refused comes fast
		}
	case endpointRemote:
		took = 60*time.Millisecond + time.Duration(rng.IntN(100))*time.Millisecond
		fail = rng.IntN(100) < 1
	default:
		return "", 0, fmt.Errorf("llm: unknown endpoint %q", endpoint)
	}
	answer := 20 + rng.IntN(maxTokens-19)
	if f.scale > 0 {
		took = time.Duration(float64(took) * f.scale)
	}
	t := time.NewTimer(took)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return "", 0, ctx.Err()
	case <-t.C:
	}
	if fail {
		return "", 0, fmt.Errorf("%w on %s", errLLM, endpoint)
	}
	return fmt.Sprintf("@%s: here is my answer to %q", m.User, m.Text), promptTokens(m) + answer, nil
}
