package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/floodgate/floodgate/internal/strictjson"
	"github.com/floodgate/floodgate/limiter"
)

// Request bounds: every body (the largest legitimate one, a pick over
// maxEndpoints names of MaxNameLen bytes, is far smaller), a pick's list,
// an allow-many list, a lease, probe or reservation token (the library's
// are far shorter).
const (
	maxBody      = 64 << 10
	maxEndpoints = 64
	maxManyUsers = 1000
	maxTokenLen  = 1024
)

// Request bodies. Unknown fields are an error (a typo such as "timeout"
// for "timeout_ms" must not silently mean the default).
type (
	pickRequest struct {
		Endpoints []string `json:"endpoints"`
	}
	manyRequest struct {
		Users []string `json:"users"`
	}
	tokenRequest struct {
		Token string `json:"token"`
	}
	bucketRequest struct {
		N         int   `json:"n"`
		TimeoutMs int64 `json:"timeout_ms"`
	}
	// unitsRequest is a budget reserve's (the estimate) or charge's.
	unitsRequest struct {
		Units *int `json:"units"`
	}
	// settleRequest is a settle's; cancelRequest, a cancel's, takes no
	// units.
	settleRequest struct {
		Reservation string `json:"reservation"`
		Units       *int   `json:"units"`
	}
	cancelRequest  settleRequest
	acquireRequest struct {
		Holder    string `json:"holder"`
		Wait      bool   `json:"wait"`
		TimeoutMs int64  `json:"timeout_ms"`
	}
)

// request is a body: normalize checks it and fills its defaults.
type request interface{ normalize() error }

// readRequest reads r's body (bounded by the server's MaxBytesReader) into
// v and checks it. An empty body is the defaults for a bucket request, an
// error for the others.
func readRequest(r *http.Request, v request) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &tooBig):
			return httpError(http.StatusRequestEntityTooLarge, "body: larger than %d bytes", tooBig.Limit)
		case errors.As(err, &ne) && ne.Timeout():
			return httpError(http.StatusRequestTimeout, "body: not received within %v (the server's read timeout)", readTimeout)
		}
		// Not the error's text: it quotes the socket addresses.
		return badRequest("body: the connection broke while it was read")
	}
	_, optional := v.(*bucketRequest)
	if err := decodeJSON(data, v, !optional); err != nil {
		return err
	}
	return v.normalize()
}

// decodeJSON decodes one JSON object from data into v, strictly
// (internal/strictjson): errors are 400s naming the field or the string.
// An empty body leaves v as it is unless required.
func decodeJSON(data []byte, v any, required bool) error {
	if len(bytes.TrimSpace(data)) == 0 {
		if required {
			return badRequest("body: want a JSON object, got nothing")
		}
		return nil
	}
	if err := strictjson.Decode(data, v); err != nil {
		return badRequest("body: %s", errText(err))
	}
	return nil
}

// normalize fills a bucket request's default n, 1.
func (b *bucketRequest) normalize() error {
	if b.N == 0 {
		b.N = 1
	}
	if b.N < 0 {
		return badRequest("n must be at least 1, got %d", b.N)
	}
	return checkTimeout(b.TimeoutMs)
}

func (a *acquireRequest) normalize() error {
	if err := checkString("holder", a.Holder, limiter.MaxUserLen, " (who takes the slot, e.g. the user id)"); err != nil {
		return err
	}
	return checkTimeout(a.TimeoutMs)
}

func checkTimeout(ms int64) error {
	if ms < 0 {
		return badRequest("timeout_ms must be 0 (the server's maximum) or more, got %d", ms)
	}
	return nil
}

// waitFor is how long a request with timeout_ms ms waits: at most maxWait,
// which 0 means.
func waitFor(ms int64, maxWait time.Duration) time.Duration {
	if ms == 0 || ms >= maxWait.Milliseconds() {
		return maxWait
	}
	return time.Duration(ms) * time.Millisecond
}

func (p *pickRequest) normalize() error {
	return checkList("endpoints", len(p.Endpoints), maxEndpoints, "endpoint names", "names")
}

func (m *manyRequest) normalize() error {
	return checkList("users", len(m.Users), maxManyUsers, "user ids", "ids")
}

// checkList refuses an empty list of items, or one longer than max.
func checkList(field string, n, max int, items, unit string) error {
	switch {
	case n == 0:
		return badRequest("%s: want a non-empty array of %s", field, items)
	case n > max:
		return badRequest("%s: %d %s, at most %d", field, n, unit, max)
	}
	return nil
}

func (t *tokenRequest) normalize() error {
	return checkString("token", t.Token, maxTokenLen, "")
}

// checkString refuses a missing value (hint says what it is) or one
// longer than max bytes.
func checkString(field, v string, max int, hint string) error {
	switch {
	case v == "":
		return badRequest("%s: missing%s", field, hint)
	case len(v) > max:
		return badRequest("%s: %d bytes, at most %d", field, len(v), max)
	}
	return nil
}

// The units' range is the library's to check (ErrInvalidArgument).
func (u *unitsRequest) normalize() error {
	if u.Units == nil {
		return badRequest("units: missing (a reserve's estimate: prompt tokens + max_tokens; a charge's cost)")
	}
	return nil
}

func (s *settleRequest) normalize() error {
	if s.Units == nil {
		return badRequest("units: missing (what the call cost; cancel a reservation whose call did not happen)")
	}
	return checkString("reservation", s.Reservation, maxTokenLen, ` (the reserve answer's "reservation")`)
}

func (c *cancelRequest) normalize() error {
	if c.Units != nil {
		return badRequest("units: a cancel takes none (nothing of the reservation counts; settle to record a cost)")
	}
	return checkString("reservation", c.Reservation, maxTokenLen, ` (the reserve answer's "reservation")`)
}
