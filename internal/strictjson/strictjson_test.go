package strictjson

import (
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
