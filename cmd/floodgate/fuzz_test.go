package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
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
		var b bucketRequest
		if err := decodeJSON(data, &b, false); err != nil {
			check("bucket", err)
		} else if wait, err := b.normalize(maxWait); err != nil {
			check("bucket", err)
		} else if b.N < 1 || wait <= 0 || wait > maxWait {
			t.Fatalf("bucket %q: n %d, wait %v", data, b.N, wait)
		} else {
			roundTrip(t, data, b)
		}
		var a acquireRequest
		if err := decodeJSON(data, &a, true); err != nil {
			check("acquire", err)
		} else if wait, err := a.normalize(maxWait); err != nil {
			check("acquire", err)
		} else if a.Holder == "" || len(a.Holder) > 256 || wait <= 0 || wait > maxWait {
			t.Fatalf("acquire %q: %+v, wait %v", data, a, wait)
		} else {
			roundTrip(t, data, a)
		}
		var p pickRequest
		if err := decodeJSON(data, &p, true); err != nil {
			check("pick", err)
		} else if err := p.normalize(); err != nil {
			check("pick", err)
		} else if len(p.Endpoints) == 0 || len(p.Endpoints) > maxEndpoints {
			t.Fatalf("pick %q: %d endpoints", data, len(p.Endpoints))
		} else {
			roundTrip(t, data, p)
		}
		var m manyRequest
		if err := decodeJSON(data, &m, true); err != nil {
			check("many", err)
		} else if err := m.normalize(); err != nil {
			check("many", err)
		} else if len(m.Users) == 0 || len(m.Users) > maxManyUsers {
			t.Fatalf("many %q: %d users", data, len(m.Users))
		} else {
			roundTrip(t, data, m)
		}
		var tk tokenRequest
		if err := decodeJSON(data, &tk, true); err != nil {
			check("token", err)
		} else if err := tk.normalize(); err != nil {
			check("token", err)
		} else if tk.Token == "" || len(tk.Token) > maxTokenLen {
			t.Fatalf("token %q: %d bytes", data, len(tk.Token))
		}
		var u unitsRequest
		if err := decodeJSON(data, &u, true); err != nil {
			check("units", err)
		} else if err := u.normalize(); err != nil {
			check("units", err)
		} else if u.Units == nil {
			t.Fatalf("units %q: none after normalize", data)
		}
		for _, cancel := range []bool{false, true} {
			st := settleRequest{cancel: cancel}
			if err := decodeJSON(data, &st, true); err != nil {
				check("settle", err)
			} else if err := st.normalize(); err != nil {
				check("settle", err)
			} else if st.Reservation == "" || len(st.Reservation) > maxTokenLen || (st.Units == nil) != cancel {
				t.Fatalf("settle (cancel %v) %q: %+v", cancel, data, st)
			}
		}
		// Through the body limit as the server reads it.
		req := httptest.NewRequest("POST", "/", strings.NewReader(string(data)))
		req.Body = http.MaxBytesReader(httptest.NewRecorder(), req.Body, 16)
		var b2 bucketRequest
		check("limited", readBody(req, &b2, false))
	})
}

// roundTrip re-encodes a decoded request and decodes it again.
func roundTrip[T any](t *testing.T, data []byte, v T) {
	t.Helper()
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%q: re-encoding %+v: %v", data, v, err)
	}
	var again T
	if err := decodeJSON(enc, &again, true); err != nil {
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
