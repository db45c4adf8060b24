package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type request struct {
	Users  []string `json:"users"`
	N      int      `json:"n"`
	Wait   bool     `json:"wait"`
	Holder string   `json:"holder,omitempty"`
}

// Every way a body could quietly mean something else is refused, naming
// what is wrong; a body that is right decodes.
func TestDecode(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"users":["a","b"],"n":2,"wait":true,"holder":"h"}`, ""},
		{`{}`, ""},
		{` {"n":1} `, ""},
		{`{"user":["a"]}`, `strictjson: unknown field "user" (field names are case-sensitive)`},
		{`{"Users":["a"]}`, `strictjson: unknown field "Users"`},
		{`{"n":1,"n":2}`, `strictjson: field "n" given twice`},
		{`{"holder":"a` + "\xff" + `"}`, `strictjson: the string "a\xff" at byte 10 is not valid Unicode`},
		{`{"holder":"\ud800"}`, `strictjson: the string "\\ud800" at byte 10 is not valid Unicode`},
		{`{"holder":"\ud83d\ude00"}`, ""},
		{`{"n":1}{}`, "strictjson: more data after the JSON object"},
		{`{"n":1,}`, "strictjson: malformed JSON at byte 8"},
		{`{"n":1`, "strictjson: malformed JSON: ends early"},
		{`[1]`, "strictjson: want a JSON object, got array"},
		{`{"n":1.5}`, `strictjson: "n" must be a whole number in range, got number`},
		{`{"n":1e30}`, `strictjson: "n" must be a whole number in range, got number`},
		{`{"wait":1}`, `strictjson: "wait" must be true or false, got number`},
		{`{"holder":1}`, `strictjson: "holder" must be a string, got number`},
		{`{"users":"a"}`, `strictjson: "users" must be an array, got string`},
		{`{"\u006e":1}`, ""},
		{`{"n":1,"\u006e":2}`, `strictjson: field "n" given twice`},
		{`{"n\"":1}`, `strictjson: unknown field "n\""`},
		{`{ "users" : ["n", "x:", "wait"], "holder" : "users:" }`, ""},
		{`{"holder":"a\\","n":1,"users":["\\\"n\":"]}`, ""},
	} {
		var req request
		err := Decode([]byte(tc.body), &req)
		if (tc.want == "") != (err == nil) || err != nil && !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.want)
		}
	}
	var req request
	if err := Decode([]byte(`{"users":["a"],"n":3}`), &req); err != nil || len(req.Users) != 1 || req.N != 3 {
		t.Fatalf("%+v %v", req, err)
	}
}

// BenchmarkDecode: a bucket request's body, and an allow-many of 1000 ids.
func BenchmarkDecode(b *testing.B) {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = strconv.Quote("user-" + strconv.Itoa(i))
	}
	for _, bc := range []struct{ name, body string }{
		{"small", `{"n":1}`},
		{"many", `{"users":[` + strings.Join(ids, ",") + `]}`},
	} {
		data := []byte(bc.body)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var req request
				if err := Decode(data, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzCheckKeys holds checkKeys, which walks bytes, to the keys a JSON
// decoder reads: the same first bad key, or none.
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{`{"n":1}`, `{"n":1,"n":2}`, `{"\u006e":1,"N":2}`, `{"users":["n",{"x":1}],"wait":{"y":[]}}`, `null`, ` { "holder" : "a\\\":" } `} {
		f.Add([]byte(s))
	}
	names := fieldNames(reflect.TypeFor[request]())
	f.Fuzz(func(t *testing.T, data []byte) {
		// What Decode refuses before its keys are looked at.
		if _, _, bad := badString(data); bad || !json.Valid(data) {
			return
		}
		// The reference: each top-level key as the decoder reads it.
		var want error
		dec := json.NewDecoder(bytes.NewReader(data))
		if tok, _ := dec.Token(); tok != json.Delim('{') {
			return
		}
		seen := map[string]bool{}
		for dec.More() && want == nil {
			tok, _ := dec.Token()
			key := tok.(string)
			switch {
			case !slices.Contains(names, key):
				want = fmt.Errorf("strictjson: unknown field %q (field names are case-sensitive)", key)
			case seen[key]:
				want = fmt.Errorf("strictjson: field %q given twice", key)
			}
			seen[key] = true
			var skip json.RawMessage
			_ = dec.Decode(&skip)
		}
		if got := checkKeys(data, names); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%q: checkKeys = %v, want %v", data, got, want)
		}
	})
}
