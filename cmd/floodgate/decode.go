package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

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
	// settleRequest is a settle's, or without units a cancel's.
	settleRequest struct {
		Reservation string `json:"reservation"`
		Units       *int   `json:"units"`
		cancel      bool
	}
	acquireRequest struct {
		Holder    string `json:"holder"`
		Wait      bool   `json:"wait"`
		TimeoutMs int64  `json:"timeout_ms"`
	}
)

// readBody reads r's body (bounded by the server's MaxBytesReader) and
// decodes it into v. An empty body leaves v as it is unless required.
func readBody(r *http.Request, v any, required bool) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &tooBig):
			return &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("body: larger than %d bytes", tooBig.Limit)}
		case errors.As(err, &ne) && ne.Timeout():
			return &apiError{status: http.StatusRequestTimeout, msg: fmt.Sprintf("body: not received within %v (the server's read timeout)", readTimeout)}
		}
		// Not the error's text: it quotes the socket addresses.
		return badRequest("body: the connection broke while it was read")
	}
	return decodeJSON(data, v, required)
}

// readChecked reads a required body into v and checks it.
func readChecked(r *http.Request, v interface{ normalize() error }) error {
	if err := readBody(r, v, true); err != nil {
		return err
	}
	return v.normalize()
}

// decodeJSON decodes one JSON object from data into v, strictly: no
// unknown, repeated or differently cased keys (encoding/json would match
// "Users" to "users" and keep the last of two), strings that are valid
// Unicode (encoding/json would turn invalid UTF-8 and lone surrogates into
// U+FFFD, so distinct ids would count as one), nothing after the object,
// numbers that fit their field. Errors are 400s naming the field or the
// string.
func decodeJSON(data []byte, v any, required bool) error {
	if len(bytes.TrimSpace(data)) == 0 {
		if required {
			return badRequest("body: want a JSON object, got nothing")
		}
		return nil
	}
	if at, str, ok := badString(data); ok {
		return badRequest("body: the string %q at byte %d is not valid Unicode (invalid UTF-8 or a lone surrogate escape)", str, at)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return badRequest("body: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("body: more data after the JSON object")
	}
	// The keys, exactly as v's fields spell them, once each.
	t := reflect.TypeOf(v).Elem()
	dec = json.NewDecoder(bytes.NewReader(data))
	_, _ = dec.Token() // {
	seen := map[string]bool{}
	for dec.More() {
		tok, _ := dec.Token()
		key, _ := tok.(string)
		known := false
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			known = known || name == key
		}
		switch {
		case !known:
			return badRequest("body: unknown field %q (field names are case-sensitive)", key)
		case seen[key]:
			return badRequest("body: field %q given twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		_ = dec.Decode(&skip)
	}
	return nil
}

var (
	// jsonString matches a JSON string literal.
	jsonString = regexp.MustCompile(`(?s)"(?:[^"\\]|\\.)*"`)
	// jsonEscape matches an escape; submatch 1 is a lone surrogate.
	jsonEscape = regexp.MustCompile(`(?s)\\(?:u[dD][89abAB][[:xdigit:]]{2}\\u[dD][c-fC-F][[:xdigit:]]{2}|(u[dD][89a-fA-F][[:xdigit:]]{2})|.)`)
)

// badString finds the first string in data (a body, before it is
// decoded) that is not valid Unicode: invalid UTF-8 or an escaped lone
// surrogate. It returns the string's offset and what is between its
// quotes.
func badString(data []byte) (at int, raw string, found bool) {
	// Most bodies: valid UTF-8 without a \u escape has no bad string, and
	// the regexps cost 0.7 ms on an allow-many of 1000 ids.
	if utf8.Valid(data) && !bytes.Contains(data, []byte(`\u`)) {
		return 0, "", false
	}
	for _, loc := range jsonString.FindAllIndex(data, -1) {
		str := data[loc[0]+1 : loc[1]-1]
		bad := !utf8.Valid(str)
		for _, m := range jsonEscape.FindAllSubmatchIndex(str, -1) {
			bad = bad || m[2] >= 0
		}
		if bad {
			return loc[0], string(str), true
		}
	}
	return 0, "", false
}

// jsonProblem says what is wrong in a body without Go type names.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("want a JSON object, got %s", typ.Value)
		}
		return fmt.Sprintf("%q must be %s, got %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: ends early"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "a whole number in range"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	}
	return "a " + t.Kind().String()
}

// normalize checks a bucket request and fills its defaults: n 1, the
// timeout capped by maxWait (0 meaning maxWait).
func (b *bucketRequest) normalize(maxWait time.Duration) (time.Duration, error) {
	if b.N == 0 {
		b.N = 1
	}
	if b.N < 0 {
		return 0, badRequest("n must be at least 1, got %d", b.N)
	}
	return timeout(b.TimeoutMs, maxWait)
}

func (a *acquireRequest) normalize(maxWait time.Duration) (time.Duration, error) {
	if a.Holder == "" {
		return 0, badRequest("holder: missing (who takes the slot, e.g. the user id)")
	}
	if len(a.Holder) > limiter.MaxUserLen {
		return 0, badRequest("holder: %d bytes, at most %d", len(a.Holder), limiter.MaxUserLen)
	}
	return timeout(a.TimeoutMs, maxWait)
}

func timeout(ms int64, maxWait time.Duration) (time.Duration, error) {
	switch {
	case ms < 0:
		return 0, badRequest("timeout_ms must be 0 (the server's maximum) or more, got %d", ms)
	case ms == 0 || ms >= maxWait.Milliseconds():
		return maxWait, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
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
	switch {
	case t.Token == "":
		return badRequest("token: missing")
	case len(t.Token) > maxTokenLen:
		return badRequest("token: %d bytes, at most %d", len(t.Token), maxTokenLen)
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
	switch r := s.Reservation; {
	case s.cancel && s.Units != nil:
		return badRequest("units: a cancel takes none (nothing of the reservation counts; settle to record a cost)")
	case !s.cancel && s.Units == nil:
		return badRequest("units: missing (what the call cost; cancel a reservation whose call did not happen)")
	case r == "":
		return badRequest("reservation: missing (the reserve answer's \"reservation\")")
	case len(r) > maxTokenLen:
		return badRequest("reservation: %d bytes, at most %d", len(r), maxTokenLen)
	}
	return nil
}
