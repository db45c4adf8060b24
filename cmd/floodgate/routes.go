package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// Users

func (s *server) userAllow(w http.ResponseWriter, r *http.Request) error {
	d, err := s.lim.Allow(r.Context(), r.PathValue("user"))
	if err != nil {
		return err
	}
	writeDecision(w, d, decisionExtra{})
	return nil
}

// allowMany decides one request for each user listed, in order, in one
// pipelined round trip (Limiter.AllowMany): for a bot that handles a burst
// of messages at once. A user listed twice makes two requests. Each
// decision stands on its own (a denial or a fail-closed redis_down is a
// decision in the list, and the answer is 200); a user whose decision
// Redis failed gets {"allowed": false, ..., "error": "..."} while the
// others stand, since they were counted.
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
	failed := map[int]string{}
	if err != nil {
		var many interface{ Unwrap() []error }
		if errors.As(err, &many) {
			for _, e := range many.Unwrap() {
				if ue, ok := errors.AsType[*limiter.UserError](e); ok {
					failed[ue.Index] = errText(e)
				}
			}
		}
		s.logf("POST /v1/allow-many: %s", scrub(err.Error()))
	}
	b := make([]byte, 0, 16+180*len(ds))
	b = append(b, `{"decisions":[`...)
	for i, d := range ds {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendDecision(b, d, decisionExtra{})
		if msg, ok := failed[i]; ok {
			b = append(b, `,"error":`...)
			b = appendJSONString(b, msg)
		}
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

func (s *server) userPeek(w http.ResponseWriter, r *http.Request) error {
	user := r.PathValue("user")
	st, err := s.lim.Peek(r.Context(), user)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, append(appendPeek(make([]byte, 0, 160+len(user)), user, st), '\n'))
	return nil
}

// appendPeek appends user's status as a JSON object: the answer of GET
// /v1/users/{user} and of floodgate user --json.
func appendPeek(b []byte, user string, st limiter.UserStatus) []byte {
	b = append(b, `{"user":`...)
	b = appendJSONString(b, user)
	b = append(b, `,"remaining":`...)
	b = strconv.AppendInt(b, int64(st.Remaining), 10)
	b = append(b, `,"retry_after_ms":`...)
	b = strconv.AppendInt(b, ceilMs(st.RetryAfter), 10)
	b = append(b, `,"reason":"`...)
	b = append(b, st.Reason.String()...)
	b = append(b, `","cooldown_left_ms":`...)
	b = strconv.AppendInt(b, ceilMs(st.CooldownLeft), 10)
	b = append(b, `,"entries":`...)
	b = strconv.AppendInt(b, int64(st.Entries), 10)
	b = append(b, `,"reset_after_ms":`...)
	b = strconv.AppendInt(b, ceilMs(st.ResetAfter), 10)
	return append(b, '}')
}

func (s *server) userReset(w http.ResponseWriter, r *http.Request) error {
	if err := s.lim.Reset(r.Context(), r.PathValue("user")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Backoff

func (s *server) backoff(r *http.Request) (*limiter.Backoff, error) {
	return s.lim.Backoff(r.PathValue("name"), limiter.BackoffSettings{})
}

func (s *server) backoffPick(w http.ResponseWriter, r *http.Request) error {
	b, err := s.backoff(r)
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
	writeDecision(w, d, decisionExtra{backoff: true, pick: true, endpoint: ep})
	return nil
}

func (s *server) backoffCheck(w http.ResponseWriter, r *http.Request) error {
	return s.backoffDecide(w, r, (*limiter.Backoff).Check)
}

func (s *server) backoffFailure(w http.ResponseWriter, r *http.Request) error {
	return s.backoffDecide(w, r, (*limiter.Backoff).Failure)
}

// backoffDecide answers op's decision on the path's breaker and endpoint.
func (s *server) backoffDecide(w http.ResponseWriter, r *http.Request, op func(*limiter.Backoff, context.Context, string) (limiter.Decision, error)) error {
	b, err := s.backoff(r)
	if err != nil {
		return err
	}
	d, err := op(b, r.Context(), r.PathValue("endpoint"))
	if err != nil {
		return err
	}
	writeDecision(w, d, decisionExtra{backoff: true})
	return nil
}

func (s *server) backoffSuccess(w http.ResponseWriter, r *http.Request) error {
	b, err := s.backoff(r)
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
	b, err := s.backoff(r)
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
	b, err := s.backoff(r)
	if err != nil {
		return err
	}
	st, err := b.Status(r.Context(), r.PathValue("endpoint"))
	if err != nil {
		return err
	}
	bs := appendBackoffStatus(append(make([]byte, 0, 160), '{'), st)
	writeJSON(w, http.StatusOK, append(bs, "}\n"...))
	return nil
}

// appendBackoffStatus appends an endpoint's state as JSON fields, without
// braces: the answer of GET /v1/backoff/{name}/endpoints/{endpoint} and
// the rows of floodgate endpoints --json.
func appendBackoffStatus(b []byte, st limiter.BackoffStatus) []byte {
	b = append(b, `"state":"`...)
	b = append(b, st.State.String()...)
	b = append(b, `","opens":`...)
	b = strconv.AppendInt(b, int64(st.Opens), 10)
	b = append(b, `,"failures":`...)
	b = strconv.AppendInt(b, int64(st.Failures), 10)
	b = append(b, `,"delay_ms":`...)
	b = strconv.AppendInt(b, ceilMs(st.Delay), 10)
	b = append(b, `,"retry_after_ms":`...)
	b = strconv.AppendInt(b, ceilMs(st.RetryAfter), 10)
	b = append(b, `,"probing":`...)
	return strconv.AppendBool(b, st.Probing)
}

// Buckets

func (s *server) bucket(r *http.Request) (*limiter.Bucket, error) {
	name := r.PathValue("name")
	if b, ok := s.buckets[name]; ok {
		return b, nil
	}
	return s.lim.Bucket(name, limiter.BucketSettings{})
}

func (s *server) bucketAllow(w http.ResponseWriter, r *http.Request) error {
	b, err := s.bucket(r)
	if err != nil {
		return err
	}
	var req bucketRequest
	if err := readBody(r, &req, false); err != nil {
		return err
	}
	if req.TimeoutMs != 0 {
		return badRequest("timeout_ms: allow never waits (use /wait)")
	}
	if _, err := req.normalize(s.set.MaxWait); err != nil {
		return err
	}
	d, err := b.AllowN(r.Context(), req.N)
	if err != nil {
		return err
	}
	writeDecision(w, d, decisionExtra{})
	return nil
}

// bucketWait takes n tokens, sleeping each denial's RetryAfter, and
// answers the first allowing decision; or, as soon as the next wait would
// pass the timeout, the denial (allowed false, with retry_after_ms).
func (s *server) bucketWait(w http.ResponseWriter, r *http.Request) error {
	b, err := s.bucket(r)
	if err != nil {
		return err
	}
	var req bucketRequest
	if err := readBody(r, &req, false); err != nil {
		return err
	}
	timeout, err := req.normalize(s.set.MaxWait)
	if err != nil {
		return err
	}
	release, err := s.startWait()
	if err != nil {
		return err
	}
	defer release()
	// The library's wait (Bucket.WaitN), bounded by the request's timeout;
	// shutdown ends it at once. When it stops short, its last denial is the
	// answer: a decision, with the wait it would have needed.
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	stop := context.AfterFunc(s.draining, cancel)
	defer stop()
	d, err := b.WaitN(ctx, req.N)
	if err != nil && (r.Context().Err() != nil || ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) || d.RetryAfter <= 0) {
		return err
	}
	writeDecision(w, d, decisionExtra{})
	return nil
}

// startWait takes a place among the requests allowed to wait at once.
func (s *server) startWait() (release func(), err error) {
	select {
	case s.waits <- struct{}{}:
		return func() { <-s.waits }, nil
	default:
		return nil, &apiError{status: http.StatusTooManyRequests, retryAfter: time.Second,
			msg: "too many requests waiting (" + strconv.Itoa(cap(s.waits)) + ", FLOODGATE_HTTP_MAX_WAITS); retry shortly"}
	}
}

// Slots

func (s *server) slots(r *http.Request) (*limiter.Slots, error) {
	return s.lim.Slots(r.PathValue("name"), limiter.SlotsSettings{})
}

func (s *server) slotsAcquire(w http.ResponseWriter, r *http.Request) error {
	pool, err := s.slots(r)
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
	var lease *limiter.Lease
	if req.Wait {
		release, err := s.startWait()
		if err != nil {
			return err
		}
		defer release()
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		// Shutdown ends the wait at once: the caller hears "not acquired"
		// instead of holding the server up.
		stop := context.AfterFunc(s.draining, cancel)
		defer stop()
		lease, err = pool.Acquire(ctx, req.Holder)
		if err != nil && ctx.Err() != nil && r.Context().Err() == nil {
			writeNoSlot(w, noSlotRetry)
			return nil
		}
	} else {
		lease, err = pool.TryAcquire(r.Context(), req.Holder)
	}
	if nse, ok := errors.AsType[*limiter.NoSlotError](err); ok {
		writeNoSlot(w, nse.RetryAfter)
		return nil
	}
	switch {
	case errors.Is(err, limiter.ErrRedisUnavailable) && r.Context().Err() == nil:
		writeJSON(w, http.StatusServiceUnavailable, []byte(`{"acquired":false,"reason":"redis_down","retry_after_ms":1000,"error":"redis unavailable and the slots policy fails closed"}`+"\n"))
		return nil
	case err != nil:
		return err
	}
	token := lease.Token()
	b := make([]byte, 0, 128+len(token))
	b = append(b, `{"acquired":true,"token":`...)
	b = strconv.AppendQuote(b, token)
	b = append(b, `,"lease_ms":`...)
	b = strconv.AppendInt(b, ceilMs(s.cfg.SlotLease), 10)
	b = append(b, `,"degraded":`...)
	b = strconv.AppendBool(b, lease.Degraded())
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}

// noSlotRetry is the retry_after_ms of a wait that timed out (a full
// pool's try answers the library's NoSlotError.RetryAfter: when the
// earliest lease expires, unless released sooner). Callers that can wait
// should ask with "wait": true, which queues them fairly.
const noSlotRetry = time.Second

// writeNoSlot answers a try that found the pool full or a wait that timed
// out: a decision, so 200, with Retry-After.
func writeNoSlot(w http.ResponseWriter, retry time.Duration) {
	w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(retry), 10))
	b := make([]byte, 0, 80)
	b = append(b, `{"acquired":false,"reason":"slots","retry_after_ms":`...)
	b = strconv.AppendInt(b, ceilMs(retry), 10)
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusOK, b)
}

func (s *server) slotsRefresh(w http.ResponseWriter, r *http.Request) error {
	return s.leaseOp(w, r, (*limiter.Lease).Refresh)
}

func (s *server) slotsRelease(w http.ResponseWriter, r *http.Request) error {
	return s.leaseOp(w, r, (*limiter.Lease).Release)
}

func (s *server) leaseOp(w http.ResponseWriter, r *http.Request, op func(*limiter.Lease, context.Context) error) error {
	pool, err := s.slots(r)
	if err != nil {
		return err
	}
	var req tokenRequest
	if err := readChecked(r, &req); err != nil {
		return err
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

func (s *server) slotsStatus(w http.ResponseWriter, r *http.Request) error {
	pool, err := s.slots(r)
	if err != nil {
		return err
	}
	inUse, waiting, err := pool.Usage(r.Context())
	if err != nil {
		return err
	}
	b := make([]byte, 0, 64)
	b = append(b, `{"size":`...)
	b = strconv.AppendInt(b, int64(pool.Size()), 10)
	b = append(b, `,"in_use":`...)
	b = strconv.AppendInt(b, int64(inUse), 10)
	b = append(b, `,"waiting":`...)
	b = strconv.AppendInt(b, int64(waiting), 10)
	b = append(b, "}\n"...)
	writeJSON(w, http.StatusOK, b)
	return nil
}
