package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeRequest: any body, on any route that reads one, is either a
// request whose normalized fields are in range or a 400/413 naming the
// problem; decoding never panics, and what decodes re-encodes to a body
// that decodes to the same request.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"n":1}`, `{"n":2,"timeout_ms":1000}`, `{"endpoints":["a","b"]}`, `{"token":"x"}`,
		`{"holder":"u","wait":true,"timeout_ms":5}`, `{"n":-1}`, `{"n":1e99}`, `[`, `{"n":1}{}`, `null`,
		`{"endpoints":null}`, `{"users":["a","b"]}`, `{"holder":"\u0000"}`, `{"timeout_ms":9223372036854775807}`, "\xff",
		`{"units":1500}`, `{"reservation":"0.1500.9f86d081884c7d65","units":900}`, `{"units":null}`, `{"reservation":""}`,
	} {
		f.Add([]byte(s))
	}
	const maxWait = 30 * time.Second
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, err error) {
			if err == nil {
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || (ae.status != http.StatusBadRequest && ae.status != http.StatusRequestEntityTooLarge) || ae.msg == "" || strings.Contains(ae.msg, "\n") {
				t.Fatalf("%s: %q gave %v", what, data, err)
			}
		}
		inRange := func(ms int64) bool { w := waitFor(ms, maxWait); return w > 0 && w <= maxWait }
		var (
			b      bucketRequest
			a      acquireRequest
			p      pickRequest
			m      manyRequest
			tk     tokenRequest
			u      unitsRequest
			settle settleRequest
			cancel cancelRequest
		)
		for _, tc := range []struct {
			name string
			req  request
			ok   func() bool // the fields are in range after normalize
		}{
			{"bucket", &b, func() bool { return b.N >= 1 && inRange(b.TimeoutMs) }},
			{"acquire", &a, func() bool { return a.Holder != "" && len(a.Holder) <= 256 && inRange(a.TimeoutMs) }},
			{"pick", &p, func() bool { return len(p.Endpoints) > 0 && len(p.Endpoints) <= maxEndpoints }},
			{"many", &m, func() bool { return len(m.Users) > 0 && len(m.Users) <= maxManyUsers }},
			{"token", &tk, func() bool { return tk.Token != "" && len(tk.Token) <= maxTokenLen }},
			{"units", &u, func() bool { return u.Units != nil }},
			{"settle", &settle, func() bool {
				return settle.Reservation != "" && len(settle.Reservation) <= maxTokenLen && settle.Units != nil
			}},
			{"cancel", &cancel, func() bool {
				return cancel.Reservation != "" && len(cancel.Reservation) <= maxTokenLen && cancel.Units == nil
			}},
		} {
			_, optional := tc.req.(*bucketRequest)
			err := decodeJSON(data, tc.req, !optional)
			if err == nil {
				err = tc.req.normalize()
			}
			switch {
			case err != nil:
				check(tc.name, err)
			case !tc.ok():
				t.Fatalf("%s %q: %+v", tc.name, data, tc.req)
			default:
				roundTrip(t, data, tc.req)
			}
		}
		// Through the body limit as the server reads it.
		req := httptest.NewRequest("POST", "/", strings.NewReader(string(data)))
		req.Body = http.MaxBytesReader(httptest.NewRecorder(), req.Body, 16)
		check("limited", readRequest(req, &bucketRequest{}))
	})
}

// roundTrip re-encodes a decoded request and decodes it again.
func roundTrip(t *testing.T, data []byte, v request) {
	t.Helper()
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%q: re-encoding %+v: %v", data, v, err)
	}
	again := reflect.New(reflect.TypeOf(v).Elem()).Interface()
	if err := decodeJSON(enc, again, true); err != nil {
		t.Fatalf("%q: %s does not decode again: %v", data, enc, err)
	}
	if a, b := string(enc), mustJSON(t, again); a != b {
		t.Fatalf("%q: %s decodes to %s", data, a, b)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
