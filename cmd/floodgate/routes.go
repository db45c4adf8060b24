package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// route is one line of the route table.
type route struct {
	method, path string
	h            handlerFunc
}

// routeTable lists every route: most are one library call, answered by
// reply (JSON), noContent (204) or decided (a decision with its headers).
func (s *server) routeTable() []route {
	user := func(r *http.Request) string { return r.PathValue("user") }
	endpoint := func(r *http.Request) string { return r.PathValue("endpoint") }
	return []route{
		{"POST", "/v1/users/{user}/allow", func(w http.ResponseWriter, r *http.Request) error {
			d, err := s.lim.Allow(r.Context(), user(r))
			return decided(w, d, newDecisionBody(d), s.userQuota, err)
		}},
		{"POST", "/v1/allow-many", s.allowMany},
		{"GET", "/v1/users/{user}", func(w http.ResponseWriter, r *http.Request) error {
			st, err := s.lim.Peek(r.Context(), user(r))
			return reply(w, newPeekBody(user(r), st), err)
		}},
		{"DELETE", "/v1/users/{user}", func(w http.ResponseWriter, r *http.Request) error {
			return noContent(w, s.lim.Reset(r.Context(), user(r)))
		}},

		{"POST", "/v1/backoff/{name}/pick", onBody(s.breakers.get, func(w http.ResponseWriter, r *http.Request, b *limiter.Backoff, req *pickRequest) error {
			ep, d, err := b.Pick(r.Context(), req.Endpoints...)
			body := backoffBody(d)
			body.Endpoint = &ep
			return decided(w, d, body, backoffQuota, err)
		})},
		{"POST", "/v1/backoff/{name}/endpoints/{endpoint}/check", s.backoffDecide((*limiter.Backoff).Check)},
		{"POST", "/v1/backoff/{name}/endpoints/{endpoint}/failure", s.backoffDecide((*limiter.Backoff).Failure)},
		{"POST", "/v1/backoff/{name}/endpoints/{endpoint}/success", on(s.breakers.get, func(w http.ResponseWriter, r *http.Request, b *limiter.Backoff) error {
			return noContent(w, b.Success(r.Context(), endpoint(r)))
		})},
		{"POST", "/v1/backoff/{name}/endpoints/{endpoint}/abandon", onBody(s.breakers.get, func(w http.ResponseWriter, r *http.Request, b *limiter.Backoff, req *tokenRequest) error {
			return noContent(w, b.Abandon(r.Context(), endpoint(r), req.Token))
		})},
		{"GET", "/v1/backoff/{name}/endpoints/{endpoint}", on(s.breakers.get, func(w http.ResponseWriter, r *http.Request, b *limiter.Backoff) error {
			st, err := b.Status(r.Context(), endpoint(r))
			return reply(w, newEndpointBody(st), err)
		})},

		{"POST", "/v1/buckets/{name}/allow", s.bucketTake(false)},
		{"POST", "/v1/buckets/{name}/wait", s.bucketTake(true)},

		{"POST", "/v1/slots/{name}/acquire", onBody(s.pools.get, s.slotsAcquire)},
		{"POST", "/v1/slots/{name}/refresh", s.leaseOp((*limiter.Lease).Refresh)},
		{"POST", "/v1/slots/{name}/release", s.leaseOp((*limiter.Lease).Release)},
		{"GET", "/v1/slots/{name}", on(s.pools.get, func(w http.ResponseWriter, r *http.Request, pool *limiter.Slots) error {
			inUse, waiting, err := pool.Usage(r.Context())
			return reply(w, poolBody{Size: pool.Size(), InUse: inUse, Waiting: waiting}, err)
		})},

		{"POST", "/v1/budgets/{name}/users/{user}/reserve", s.budgetAdmit((*limiter.Budget).Reserve)},
		{"POST", "/v1/budgets/{name}/users/{user}/charge", s.budgetAdmit((*limiter.Budget).Charge)},
		{"POST", "/v1/budgets/{name}/users/{user}/settle", onBody(s.budgetOf, func(w http.ResponseWriter, r *http.Request, b *limiter.Budget, req *settleRequest) error {
			return noContent(w, b.Settle(r.Context(), user(r), req.Reservation, *req.Units))
		})},
		{"POST", "/v1/budgets/{name}/users/{user}/cancel", onBody(s.budgetOf, func(w http.ResponseWriter, r *http.Request, b *limiter.Budget, req *cancelRequest) error {
			return noContent(w, b.Cancel(r.Context(), user(r), req.Reservation))
		})},
		{"GET", "/v1/budgets/{name}/users/{user}", on(s.budgetOf, func(w http.ResponseWriter, r *http.Request, b *limiter.Budget) error {
			st, err := b.Peek(r.Context(), user(r))
			return reply(w, newBudgetBody(b, user(r), st), err)
		})},

		{"GET", "/healthz", s.healthz},
		{"GET", "/readyz", s.readyz},
	}
}

// on is a route on the handle get finds for the path's {name} (a slot
// pool, a breaker, the budget).
func on[T any](get func(name string) (*T, error), h func(http.ResponseWriter, *http.Request, *T) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := get(r.PathValue("name"))
		if err != nil {
			return err
		}
		return h(w, r, v)
	}
}

// onBody is on for a route with a body, which h gets read and checked
// (readRequest).
func onBody[T, B any, PB interface {
	*B
	request
}](get func(name string) (*T, error), h func(http.ResponseWriter, *http.Request, *T, PB) error) handlerFunc {
	return on(get, func(w http.ResponseWriter, r *http.Request, v *T) error {
		req := PB(new(B))
		if err := readRequest(r, req); err != nil {
			return err
		}
		return h(w, r, v, req)
	})
}

// reply answers v (200) unless err.
func reply(w http.ResponseWriter, v any, err error) error {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
	}
	return err
}

// noContent answers 204 unless err.
func noContent(w http.ResponseWriter, err error) error {
	if err == nil {
		w.WriteHeader(http.StatusNoContent)
	}
	return err
}

// decided answers the decision d (writeDecision) unless err.
func decided(w http.ResponseWriter, d limiter.Decision, body decisionBody, q quota, err error) error {
	if err == nil {
		writeDecision(w, d, body, q)
	}
	return err
}

// allowMany decides one request per user listed, in order, in one round
// trip (Limiter.AllowMany). Each decision stands on its own, so the answer
// is 200; a user whose decision Redis failed gets "error" while the others
// stand, since they were counted. It carries no RateLimit headers.
func (s *server) allowMany(w http.ResponseWriter, r *http.Request) error {
	var req manyRequest
	if err := readRequest(r, &req); err != nil {
		return err
	}
	ds, err := s.lim.AllowMany(r.Context(), req.Users)
	if ds == nil {
		return cmpErr(err, errors.New("no decisions"))
	}
	out := struct {
		Decisions []decisionBody `json:"decisions"`
	}{make([]decisionBody, len(ds))}
	for i, d := range ds {
		out.Decisions[i] = newDecisionBody(d)
	}
	var many interface{ Unwrap() []error }
	if errors.As(err, &many) {
		for _, e := range many.Unwrap() {
			if ue, ok := errors.AsType[*limiter.UserError](e); ok && ue.Index < len(ds) {
				out.Decisions[ue.Index].Error = errText(e)
			}
		}
	}
	if err != nil {
		s.logf("POST /v1/allow-many: %s", errText(err))
	}
	return reply(w, out, nil)
}

// cmpErr is err, or def when err is nil.
func cmpErr(err, def error) error {
	if err == nil {
		return def
	}
	return err
}

// backoffDecide is a route answering op's decision (check, failure) on
// the path's breaker and endpoint.
func (s *server) backoffDecide(op func(*limiter.Backoff, context.Context, string) (limiter.Decision, error)) handlerFunc {
	return on(s.breakers.get, func(w http.ResponseWriter, r *http.Request, b *limiter.Backoff) error {
		d, err := op(b, r.Context(), r.PathValue("endpoint"))
		return decided(w, d, backoffBody(d), backoffQuota, err)
	})
}

// bucketTake is a route taking the body's n tokens from the path's
// bucket: at once, or with wait until the request's timeout; a wait that
// stops short (the timeout, shutdown) answers its last denial.
func (s *server) bucketTake(wait bool) handlerFunc {
	return onBody(s.bucketOf, func(w http.ResponseWriter, r *http.Request, b *limiter.Bucket, req *bucketRequest) error {
		if !wait && req.TimeoutMs != 0 {
			return badRequest("timeout_ms: allow never waits (use /wait)")
		}
		ctx, done, err := s.startWait(r, wait, req.TimeoutMs)
		if err != nil {
			return err
		}
		defer done()
		take := b.AllowN
		if wait {
			take = b.WaitN
		}
		d, err := take(ctx, req.N)
		if err != nil && wait && waitEnded(r, ctx, err) && d.RetryAfter > 0 {
			err = nil
		}
		return decided(w, d, newDecisionBody(d), s.bucketQuotas[b.Name()], err)
	})
}

// bucketOf returns the configured bucket name, built at startup.
func (s *server) bucketOf(name string) (*limiter.Bucket, error) {
	if b, ok := s.buckets[name]; ok {
		return b, nil
	}
	// Not configured, or refused at startup: the library says why.
	_, err := s.lim.Bucket(name, limiter.BucketSettings{})
	return nil, cmpErr(err, badRequest("bucket %q could not be built at startup", name))
}

// startWait, for a request that waits, takes a place among the requests
// allowed to wait at once (429 when none is free) and returns the wait's
// context: r's, ending after timeout_ms ms (at most MaxWait) or when
// shutdown begins; done gives the place back. A request that does not
// wait gets r's context.
func (s *server) startWait(r *http.Request, wait bool, ms int64) (ctx context.Context, done func(), err error) {
	if !wait {
		return r.Context(), func() {}, nil
	}
	select {
	case s.waits <- struct{}{}:
	default:
		return nil, nil, &apiError{status: http.StatusTooManyRequests, retryAfter: time.Second,
			msg: "too many requests waiting (" + strconv.Itoa(cap(s.waits)) + ", FLOODGATE_HTTP_MAX_WAITS); retry shortly"}
	}
	ctx, cancel := context.WithTimeout(r.Context(), waitFor(ms, s.set.MaxWait))
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

// slotsAcquire takes a slot of pool for the body's holder: at once, or
// with wait until the request's timeout.
func (s *server) slotsAcquire(w http.ResponseWriter, r *http.Request, pool *limiter.Slots, req *acquireRequest) error {
	ctx, done, err := s.startWait(r, req.Wait, req.TimeoutMs)
	if err != nil {
		return err
	}
	defer done()
	acquire := pool.TryAcquire
	if req.Wait {
		acquire = pool.Acquire
	}
	lease, err := acquire(ctx, req.Holder)
	nse, noSlot := errors.AsType[*limiter.NoSlotError](err)
	switch {
	case err == nil:
		// Acquired: the policy, no count (RateLimit is for a denial).
		w.Header()["Ratelimit-Policy"] = s.slotsQuota.policy
		writeJSON(w, http.StatusOK, acquireBody{Acquired: true, Token: lease.Token(), LeaseMs: ceilMs(s.cfg.SlotLease), Reason: "none", Degraded: lease.Degraded()})
	case noSlot:
		s.writeNoSlot(w, nse.RetryAfter)
	case r.Context().Err() != nil:
		return err
	case errors.Is(err, limiter.ErrRedisUnavailable):
		// The policy fails closed: a decision like the others' redis_down.
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, acquireBody{Reason: "redis_down", RetryAfterMs: 1000, Error: "redis unavailable and the slots policy fails closed"})
	case waitEnded(r, ctx, err):
		// The caller hears "not acquired", retry in noSlotRetry.
		s.writeNoSlot(w, noSlotRetry)
	default:
		return err
	}
	return nil
}

// noSlotRetry is the retry_after_ms of a wait that timed out (callers that
// can wait should ask again with "wait": true, which queues them fairly).
const noSlotRetry = time.Second

// writeNoSlot answers a try that found the pool full or a wait that timed
// out: a decision, so 200, with Retry-After.
func (s *server) writeNoSlot(w http.ResponseWriter, retry time.Duration) {
	s.slotsQuota.set(w.Header(), limiter.Decision{RetryAfter: retry})
	writeJSON(w, http.StatusOK, acquireBody{Reason: "slots", RetryAfterMs: ceilMs(retry)})
}

// leaseOp is a route running op (refresh, release) on the lease the
// body's token names: 204.
func (s *server) leaseOp(op func(*limiter.Lease, context.Context) error) handlerFunc {
	return onBody(s.pools.get, func(w http.ResponseWriter, r *http.Request, pool *limiter.Slots, req *tokenRequest) error {
		lease, err := pool.Lease(req.Token)
		if err != nil {
			return err
		}
		return noContent(w, op(lease, r.Context()))
	})
}

// budgetName is the one budget served, when FLOODGATE_USER_TOKEN_BUDGET
// is set.
const budgetName = "llm"

// budgetOf returns the budget name, or a 404.
func (s *server) budgetOf(name string) (*limiter.Budget, error) {
	switch {
	case s.budget == nil:
		return nil, httpError(http.StatusNotFound, "budget %q: no token budget on this server (set FLOODGATE_USER_TOKEN_BUDGET)", name)
	case name != budgetName:
		return nil, httpError(http.StatusNotFound, "budget %q: this server serves one budget, %q (FLOODGATE_USER_TOKEN_BUDGET)", name, budgetName)
	}
	return s.budget, nil
}

// budgetAdmit is a route answering op's decision (reserve, charge) for
// the body's units; an allowed reserve names its reservation.
func (s *server) budgetAdmit(op func(*limiter.Budget, context.Context, string, int) (limiter.Decision, error)) handlerFunc {
	return onBody(s.budgetOf, func(w http.ResponseWriter, r *http.Request, b *limiter.Budget, req *unitsRequest) error {
		d, err := op(b, r.Context(), r.PathValue("user"), *req.Units)
		body := newDecisionBody(d)
		body.Reservation = d.Token
		return decided(w, d, body, s.budgetQuota, err)
	})
}
