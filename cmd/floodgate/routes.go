package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// The policy routes (the table is in server.go).

// Users

func (s *server) userAllow(w http.ResponseWriter, r *http.Request) error {
	d, err := s.lim.Allow(r.Context(), r.PathValue("user"))
	if err != nil {
		return err
	}
	writeDecision(w, d, newDecisionBody(d), s.userQuota)
	return nil
}

// allowMany decides one request for each user listed, in order, in one
// pipelined round trip (Limiter.AllowMany): for a bot that handles a burst
// of messages at once. A user listed twice makes two requests. Each
// decision stands on its own (a denial or a fail-closed redis_down is a
// decision in the list, and the answer is 200); a user whose decision
// Redis failed gets {"allowed": false, ..., "error": "..."} while the
// others stand, since they were counted. One answer for many users
// carries no RateLimit headers.
func (s *server) allowMany(w http.ResponseWriter, r *http.Request) error {
	var req manyRequest
	if err := readChecked(r, &req); err != nil {
		return err
	}
	ds, err := s.lim.AllowMany(r.Context(), req.Users)
	if ds == nil {
		if err == nil {
			err = errors.New("no decisions")
		}
		return err
	}
	out := struct {
		Decisions []decisionBody `json:"decisions"`
	}{make([]decisionBody, len(ds))}
	for i, d := range ds {
		out.Decisions[i] = newDecisionBody(d)
	}
	if err != nil {
		var many interface{ Unwrap() []error }
		if errors.As(err, &many) {
			for _, e := range many.Unwrap() {
				if ue, ok := errors.AsType[*limiter.UserError](e); ok && ue.Index < len(ds) {
					out.Decisions[ue.Index].Error = errText(e)
				}
			}
		}
		s.logf("POST /v1/allow-many: %s", errText(err))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *server) userPeek(w http.ResponseWriter, r *http.Request) error {
	user := r.PathValue("user")
	st, err := s.lim.Peek(r.Context(), user)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newPeekBody(user, st))
	return nil
}

func (s *server) userReset(w http.ResponseWriter, r *http.Request) error {
	if err := s.lim.Reset(r.Context(), r.PathValue("user")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Backoff

func (s *server) backoffPick(w http.ResponseWriter, r *http.Request) error {
	b, err := s.breakers.get(r.PathValue("name"))
	if err != nil {
		return err
	}
	var req pickRequest
	if err := readChecked(r, &req); err != nil {
		return err
	}
	ep, d, err := b.Pick(r.Context(), req.Endpoints...)
	if err != nil {
		return err
	}
	body := backoffBody(d)
	body.Endpoint = &ep
	writeDecision(w, d, body, backoffQuota)
	return nil
}

// backoffDecide is a route answering op's decision (check, failure) on
// the path's breaker and endpoint.
func (s *server) backoffDecide(op func(*limiter.Backoff, context.Context, string) (limiter.Decision, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := s.breakers.get(r.PathValue("name"))
		if err != nil {
			return err
		}
		d, err := op(b, r.Context(), r.PathValue("endpoint"))
		if err != nil {
			return err
		}
		writeDecision(w, d, backoffBody(d), backoffQuota)
		return nil
	}
}

func (s *server) backoffSuccess(w http.ResponseWriter, r *http.Request) error {
	b, err := s.breakers.get(r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := b.Success(r.Context(), r.PathValue("endpoint")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) backoffAbandon(w http.ResponseWriter, r *http.Request) error {
	b, err := s.breakers.get(r.PathValue("name"))
	if err != nil {
		return err
	}
	var req tokenRequest
	if err := readChecked(r, &req); err != nil {
		return err
	}
	if err := b.Abandon(r.Context(), r.PathValue("endpoint"), req.Token); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) backoffStatus(w http.ResponseWriter, r *http.Request) error {
	b, err := s.breakers.get(r.PathValue("name"))
	if err != nil {
		return err
	}
	st, err := b.Status(r.Context(), r.PathValue("endpoint"))
	if err != nil {
		return err
	}
	body := newEndpointBody("", st)
	writeJSON(w, http.StatusOK, body)
	return nil
}

// Buckets

// bucket reads a bucket request: the path's bucket (configured APIs
// only), n and the timeout.
func (s *server) bucket(r *http.Request) (*limiter.Bucket, bucketRequest, time.Duration, error) {
	var req bucketRequest
	b, ok := s.buckets[r.PathValue("name")]
	if !ok {
		// Not configured, or refused at startup: the library says why.
		_, err := s.lim.Bucket(r.PathValue("name"), limiter.BucketSettings{})
		if err == nil {
			err = badRequest("bucket %q could not be built at startup", r.PathValue("name"))
		}
		return nil, req, 0, err
	}
	if err := readBody(r, &req, false); err != nil {
		return nil, req, 0, err
	}
	timeout, err := req.normalize(s.set.MaxWait)
	return b, req, timeout, err
}

func (s *server) bucketAllow(w http.ResponseWriter, r *http.Request) error {
	b, req, _, err := s.bucket(r)
	if err != nil {
		return err
	}
	if req.TimeoutMs != 0 {
		return badRequest("timeout_ms: allow never waits (use /wait)")
	}
	d, err := b.AllowN(r.Context(), req.N)
	if err != nil {
		return err
	}
	writeDecision(w, d, newDecisionBody(d), s.bucketQuotas[b.Name()])
	return nil
}

// bucketWait takes n tokens through the library's wait (Bucket.WaitN),
// bounded by the request's timeout, and answers the first allowing
// decision; when it stops short (the timeout, shutdown), its last denial:
// a decision, with the wait it would have needed.
func (s *server) bucketWait(w http.ResponseWriter, r *http.Request) error {
	b, req, timeout, err := s.bucket(r)
	if err != nil {
		return err
	}
	ctx, done, err := s.startWait(r, timeout)
	if err != nil {
		return err
	}
	defer done()
	d, err := b.WaitN(ctx, req.N)
	if err != nil && (!waitEnded(r, ctx, err) || d.RetryAfter <= 0) {
		return err
	}
	writeDecision(w, d, newDecisionBody(d), s.bucketQuotas[b.Name()])
	return nil
}

// startWait takes a place among the requests allowed to wait at once
// (429 when none is free) and returns the wait's context: r's, ending
// after timeout or when shutdown begins. done gives the place back.
func (s *server) startWait(r *http.Request, timeout time.Duration) (ctx context.Context, done func(), err error) {
	select {
	case s.waits <- struct{}{}:
	default:
		return nil, nil, &apiError{status: http.StatusTooManyRequests, retryAfter: time.Second,
			msg: "too many requests waiting (" + strconv.Itoa(cap(s.waits)) + ", FLOODGATE_HTTP_MAX_WAITS); retry shortly"}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	stop := context.AfterFunc(s.draining, cancel)
	return ctx, func() { stop(); cancel(); <-s.waits }, nil
}

// waitEnded reports whether a wait on ctx (from startWait) that returned
// err stopped for its timeout or shutdown, not because the client left.
// The library's waits return a deadline error early when the next try
// would come too late.
func waitEnded(r *http.Request, ctx context.Context, err error) bool {
	return r.Context().Err() == nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded))
}

// Slots

func (s *server) slotsAcquire(w http.ResponseWriter, r *http.Request) error {
	pool, err := s.pools.get(r.PathValue("name"))
	if err != nil {
		return err
	}
	var req acquireRequest
	if err := readBody(r, &req, true); err != nil {
		return err
	}
	timeout, err := req.normalize(s.set.MaxWait)
	if err != nil {
		return err
	}
	ctx, acquire := r.Context(), pool.TryAcquire
	if req.Wait {
		wctx, done, err := s.startWait(r, timeout)
		if err != nil {
			return err
		}
		defer done()
		ctx, acquire = wctx, pool.Acquire
	}
	lease, err := acquire(ctx, req.Holder)
	nse, noSlot := errors.AsType[*limiter.NoSlotError](err)
	switch {
	case err == nil:
		setSlotHeaders(w.Header(), pool.Size(), true, 0)
		writeJSON(w, http.StatusOK, acquireBody{Acquired: true, Token: lease.Token(), LeaseMs: ceilMs(s.cfg.SlotLease), Reason: "none", Degraded: lease.Degraded()})
	case noSlot:
		writeNoSlot(w, pool.Size(), nse.RetryAfter)
	case r.Context().Err() != nil:
		return err
	case errors.Is(err, limiter.ErrRedisUnavailable):
		// The policy fails closed: a decision like the others' redis_down.
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, acquireBody{Reason: "redis_down", RetryAfterMs: 1000, Error: "redis unavailable and the slots policy fails closed"})
	case waitEnded(r, ctx, err):
		// The wait's timeout or shutdown: the caller hears "not acquired".
		writeNoSlot(w, pool.Size(), noSlotRetry)
	default:
		return err
	}
	return nil
}

// noSlotRetry is the retry_after_ms of a wait that timed out (a full
// pool's try answers the library's NoSlotError.RetryAfter: when the
// earliest lease expires, unless released sooner). Callers that can wait
// should ask with "wait": true, which queues them fairly.
const noSlotRetry = time.Second

// writeNoSlot answers a try that found the pool full or a wait that timed
// out: a decision, so 200, with Retry-After.
func writeNoSlot(w http.ResponseWriter, size int, retry time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(retry), 10))
	setSlotHeaders(w.Header(), size, false, retry)
	writeJSON(w, http.StatusOK, acquireBody{Reason: "slots", RetryAfterMs: ceilMs(retry)})
}

// leaseOp is a route running op (refresh, release) on the lease the
// body's token names: 204.
func (s *server) leaseOp(op func(*limiter.Lease, context.Context) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		pool, err := s.pools.get(r.PathValue("name"))
		if err != nil {
			return err
		}
		var req tokenRequest
		if err := readChecked(r, &req); err != nil {
			return err
		}
		// A fail-open lease holds nothing, so refreshing or releasing one
		// succeeds without asking Redis: unless this server's pools fail
		// open, a token that says "o." (Lease.Token's mode) was altered.
		if strings.HasPrefix(req.Token, "o.") && s.cfg.SlotsOnRedisError != limiter.FailOpen {
			return badRequest("token: a fail-open lease, but FLOODGATE_SLOTS_ON_REDIS_ERROR is not open here: altered or from another server")
		}
		lease, err := pool.Lease(req.Token)
		if err != nil {
			return err
		}
		if err := op(lease, r.Context()); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *server) slotsStatus(w http.ResponseWriter, r *http.Request) error {
	pool, err := s.pools.get(r.PathValue("name"))
	if err != nil {
		return err
	}
	inUse, waiting, err := pool.Usage(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, poolBody{Size: pool.Size(), InUse: inUse, Waiting: waiting})
	return nil
}

// Budgets

// budgetName is the one budget served, when FLOODGATE_USER_TOKEN_BUDGET
// is set.
const budgetName = "llm"

// budgetOf returns the path's budget: "llm", when configured.
func (s *server) budgetOf(r *http.Request) (*limiter.Budget, error) {
	name := r.PathValue("name")
	switch {
	case s.budget == nil:
		return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("budget %q: no token budget on this server (set FLOODGATE_USER_TOKEN_BUDGET)", name)}
	case name != budgetName:
		return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("budget %q: this server serves one budget, %q (FLOODGATE_USER_TOKEN_BUDGET)", name, budgetName)}
	}
	return s.budget, nil
}

// budgetAdmit is a route answering op's decision (reserve, charge) for
// the body's units; an allowed reserve names its reservation.
func (s *server) budgetAdmit(op func(*limiter.Budget, context.Context, string, int) (limiter.Decision, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := s.budgetOf(r)
		if err != nil {
			return err
		}
		var req unitsRequest
		if err := readChecked(r, &req); err != nil {
			return err
		}
		d, err := op(b, r.Context(), r.PathValue("user"), *req.Units)
		if err != nil {
			return err
		}
		body := newDecisionBody(d)
		body.Reservation = d.Token
		writeDecision(w, d, body, s.budgetQuota)
		return nil
	}
}

// budgetSettle is a route settling the body's reservation at its units
// or, for cancel, freeing it: 204.
func (s *server) budgetSettle(cancel bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := s.budgetOf(r)
		if err != nil {
			return err
		}
		req := settleRequest{cancel: cancel}
		if err := readChecked(r, &req); err != nil {
			return err
		}
		if cancel {
			err = b.Cancel(r.Context(), r.PathValue("user"), req.Reservation)
		} else {
			err = b.Settle(r.Context(), r.PathValue("user"), req.Reservation, *req.Units)
		}
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *server) budgetPeek(w http.ResponseWriter, r *http.Request) error {
	b, err := s.budgetOf(r)
	if err != nil {
		return err
	}
	user := r.PathValue("user")
	st, err := b.Peek(r.Context(), user)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newBudgetBody(b, user, st))
	return nil
}
