// Package strictjson decodes one JSON object into a struct strictly, for
// request bodies a typo must not quietly change: encoding/json would
// ignore an unknown key, match "Users" to "users", keep the last of two
// equal keys and turn invalid UTF-8 and lone surrogates into U+FFFD (so
// distinct ids would count as one).
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Decode decodes data, one JSON object and nothing after it, into v, a
// pointer to a struct: every key must be one of v's json names, spelt
// exactly and given once; every string valid Unicode; every number must
// fit its field. Errors start "strictjson: " and name the field or the
// string, without Go type names.
func Decode(data []byte, v any) error {
	if at, str, ok := badString(data); ok {
		return fmt.Errorf("strictjson: the string %q at byte %d is not valid Unicode (invalid UTF-8 or a lone surrogate escape)", str, at)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("strictjson: %s", problem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("strictjson: more data after the JSON object")
	}
	return checkKeys(data, fieldNames(reflect.TypeOf(v).Elem()))
}

// checkKeys checks that every key of the object in data is one of names,
// spelt exactly, and given once. data is valid JSON (Decode read it), so
// its bytes are walked rather than decoded a second time: at depth 1, a
// string followed by ':' is a key.
func checkKeys(data []byte, names []string) error {
	seen := make([]bool, len(names))
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			end := i + 1
			for data[end] != '"' {
				if data[end] == '\\' {
					end++
				}
				end++
			}
			quoted := data[i : end+1]
			i = end
			if depth != 1 || !followedByColon(data[end+1:]) {
				continue
			}
			key := quoted[1 : len(quoted)-1]
			if bytes.IndexByte(key, '\\') >= 0 {
				var s string
				_ = json.Unmarshal(quoted, &s) // valid: Decode read it
				key = []byte(s)
			}
			at := slices.IndexFunc(names, func(n string) bool { return n == string(key) })
			switch {
			case at < 0:
				return fmt.Errorf("strictjson: unknown field %q (field names are case-sensitive)", key)
			case seen[at]:
				return fmt.Errorf("strictjson: field %q given twice", key)
			}
			seen[at] = true
		}
	}
	return nil
}

// followedByColon reports whether b, after white space, starts with ':'.
func followedByColon(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\n\r")
	return len(b) > 0 && b[0] == ':'
}

// fieldNames returns the json names of struct type t's fields.
func fieldNames(t reflect.Type) []string {
	names := make([]string, t.NumField())
	for i := range names {
		names[i], _, _ = strings.Cut(t.Field(i).Tag.Get("json"), ",")
	}
	return names
}

var (
	// jsonString matches a JSON string literal.
	jsonString = regexp.MustCompile(`(?s)"(?:[^"\\]|\\.)*"`)
	// jsonEscape matches an escape; submatch 1 is a lone surrogate.
	jsonEscape = regexp.MustCompile(`(?s)\\(?:u[dD][89abAB][[:xdigit:]]{2}\\u[dD][c-fC-F][[:xdigit:]]{2}|(u[dD][89a-fA-F][[:xdigit:]]{2})|.)`)
)

// badString finds the first string in data (before it is decoded) that is
// not valid Unicode: invalid UTF-8 or an escaped lone surrogate. It
// returns the string's offset and what is between its quotes.
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

// problem says what is wrong in data without Go type names.
func problem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("want a JSON object, got %s", typ.Value)
		}
		return fmt.Sprintf("%q must be %s, got %s", typ.Field, kind(typ.Type), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: ends early"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func kind(t reflect.Type) string {
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
