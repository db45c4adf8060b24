package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// bot is one replica's message handler: the order of checks a chat bot
// with an LLM behind it would make. The optional policies (wiki, acquire,
// pick) are nil until wired by wire.go.
type bot struct {
	replica int
	lim     *limiter.Limiter
	llm     *fakeLLM
	log     *slog.Logger
	rec     *recorder

	// wiki takes one call from the shared Wikipedia API rate.
	wiki func(ctx context.Context) (limiter.Decision, error)
	// acquire takes one of the shared LLM slots for holder; release gives
	// it back.
	acquire func(ctx context.Context, holder string) (release func(context.Context), d limiter.Decision, err error)
	// pick chooses the first LLM endpoint that is not backing off.
	pick func(ctx context.Context) (endpoint string, d limiter.Decision, err error)
	// report tells the endpoint's backoff how a call went; d is pick's
	// decision, which may hold the endpoint's half-open probe.
	report func(ctx context.Context, endpoint string, d limiter.Decision, callErr error)
	// reserve holds a call's estimated tokens of the user's budget;
	// settle records what the call cost, or frees them if it failed or
	// never happened (callErr).
	reserve func(ctx context.Context, user string, estimate int) (settle func(ctx context.Context, tokens int, callErr error), d limiter.Decision, err error)
}

// errNoCall settles a reservation whose LLM call never happened.
var errNoCall = errors.New("no LLM call")

// Held-back reasons besides the limiter's (cooldown, window, rate, slots,
// budget, backoff, probing, redis_down).
const (
	heldLLMError = "llm_error" // the LLM call failed; its endpoint's backoff was told
	heldError    = "error"     // the limiter returned an error (Redis trouble)
)

// handle answers m or holds it back, recording which and why.
func (b *bot) handle(ctx context.Context, m message) {
	b.rec.message(m)
	log := b.log.With("seq", m.Seq, "user", m.User)

	pre := time.Now()
	d, err := b.lim.Allow(ctx, m.User)
	post := time.Now()
	if !b.decided(log, m, "user", d, err) {
		return
	}
	b.rec.accepted(m.User, pre, post)

	if m.Wiki && b.wiki != nil {
		pre := time.Now()
		d, err := b.wiki(ctx)
		post := time.Now()
		if !b.decided(log, m, "wiki", d, err) {
			return
		}
		b.rec.wikiCall(pre, post)
	}

	if b.acquire != nil {
		release, d, err := b.acquire(ctx, fmt.Sprintf("r%d-m%d", b.replica, m.Seq))
		if !b.decided(log, m, "slots", d, err) {
			return
		}
		from := time.Now()
		defer func() {
			// Recorded before Release, so the interval lies inside the
			// lease as Redis saw it.
			b.rec.lease(from, time.Now())
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			release(rctx)
		}()
	}

	tokens, callErr := 0, errNoCall
	if b.reserve != nil {
		settle, d, err := b.reserve(ctx, m.User, estimate(m))
		if !b.decided(log, m, "budget", d, err) {
			return
		}
		defer func() { settle(ctx, tokens, callErr) }()
	}

	endpoint := endpoints[0]
	var picked limiter.Decision
	if b.pick != nil {
		ep, d, err := b.pick(ctx)
		if !b.decided(log, m, "backoff", d, err) {
			return
		}
		endpoint, picked = ep, d
	}
	var reply string
	reply, tokens, callErr = b.llm.generate(ctx, endpoint, m)
	if b.report != nil {
		b.report(ctx, endpoint, picked, callErr)
	}
	if b.llm.outage(m.At) {
		b.rec.duringOutage(endpoint)
	}
	if callErr != nil {
		b.rec.held(m, heldLLMError)
		b.rec.endpointFailure(endpoint)
		log.Debug("held back", "why", heldLLMError, "endpoint", endpoint, "err", callErr)
		return
	}
	b.rec.answered(m, endpoint)
	log.Debug("answered", "endpoint", endpoint, "tokens", tokens, "reply", reply)
}

// decided records a denial or an error of one stage and reports whether
// the message may go on.
func (b *bot) decided(log *slog.Logger, m message, stage string, d limiter.Decision, err error) bool {
	if d.Degraded {
		b.rec.degraded()
	}
	switch {
	case err != nil:
		b.rec.held(m, heldError)
		if !errors.Is(err, context.Canceled) {
			log.Warn("limiter error", "stage", stage, "err", err)
		}
		return false
	case !d.Allowed:
		b.rec.held(m, d.Reason.String())
		log.Debug("held back", "stage", stage, "why", d.Reason.String(), "retry_after", d.RetryAfter)
		return false
	}
	return true
}

// recorder collects one replica's summary.
type recorder struct {
	mu sync.Mutex
	s  *summary
}

func newRecorder(s *summary) *recorder {
	s.Held = map[string]int{}
	s.Kinds = map[string]*kindStats{}
	for _, k := range kinds {
		s.Kinds[k] = &kindStats{}
	}
	s.Endpoints = map[string]int{}
	s.EndpointFailures = map[string]int{}
	s.Accepted = map[string][][2]int64{}
	return &recorder{s: s}
}

func (r *recorder) message(m message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Messages++
	r.s.Kinds[m.Kind].Messages++
}

func (r *recorder) held(m message, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Held[why]++
	k := r.s.Kinds[m.Kind]
	if k.Held == nil {
		k.Held = map[string]int{}
	}
	k.Held[why]++
}

func (r *recorder) answered(m message, endpoint string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Answered++
	r.s.Kinds[m.Kind].Answered++
	r.s.Endpoints[endpoint]++
}

func (r *recorder) endpointFailure(endpoint string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.EndpointFailures[endpoint]++
}

// duringOutage counts a call made while the local endpoint was down.
func (r *recorder) duringOutage(endpoint string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s.OutageCalls == nil {
		r.s.OutageCalls = map[string]int{}
	}
	r.s.OutageCalls[endpoint]++
}

func (r *recorder) degraded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Degraded++
}

// accepted records that user's request was counted by Redis at some
// moment between pre and post.
func (r *recorder) accepted(user string, pre, post time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Accepted[user] = append(r.s.Accepted[user], [2]int64{pre.UnixMicro(), post.UnixMicro()})
}

func (r *recorder) wikiCall(pre, post time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.WikiCalls = append(r.s.WikiCalls, [2]int64{pre.UnixMicro(), post.UnixMicro()})
}

// lease records that a slot was held at least from from to to.
func (r *recorder) lease(from, to time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Leases = append(r.s.Leases, [2]int64{from.UnixMicro(), to.UnixMicro()})
}
