package sentpath

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// What a route sees of each target, with Check and Route before the mux
// as in a server's middleware: a value of exactly "/" (%2F, any case)
// whole, in any position; empty, "." and ".." segments and a target that
// is no path refused (400), where ServeMux alone would redirect.
func TestRouting(t *testing.T) {
	mux := http.NewServeMux()
	for _, p := range []string{"GET /v1/users/{user}", "POST /v1/backoff/{name}/endpoints/{endpoint}/failure"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			Restore(r)
			_, _ = w.Write([]byte(r.PathValue("user") + "|" + r.PathValue("name") + "|" + r.PathValue("endpoint")))
		})
	}
	h := func(w http.ResponseWriter, r *http.Request) {
		if err := Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mux.ServeHTTP(w, Route(r))
	}
	for _, tc := range []struct {
		method, target string
		code           int
		body           string // its start
	}{
		{"GET", "/v1/users/%2F", 200, "/||"},
		{"GET", "/v1/users/%2f", 200, "/||"},
		{"GET", "/v1/users/a%2Fb", 200, "a/b||"},
		{"GET", "/v1/users/alice", 200, "alice||"},
		{"GET", "/v1/users/%2E%2E", 200, "..||"},
		{"POST", "/v1/backoff/%2F/endpoints/%2F/failure", 200, "|/|/"},
		{"POST", "/v1/backoff/b/endpoints/%2F/failure", 200, "|b|/"},
		{"GET", "/v1/users/", 404, ""},
		{"GET", "/v1/users/..", 400, "sentpath: path has an empty, '.' or '..' segment"},
		{"GET", "/v1/users/.", 400, "sentpath: path has an empty"},
		{"GET", "/v1/users/a/../b", 400, "sentpath: path has an empty"},
		{"GET", "//v1/users/a", 400, "sentpath: path has an empty"},
		{"GET", "/v1//a", 400, "sentpath: path has an empty"},
		{"OPTIONS", "*", 400, "sentpath: request target must be a path starting with '/'"},
	} {
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest(tc.method, tc.target, nil))
		if body := w.Body.String(); w.Code != tc.code || len(body) < len(tc.body) || body[:len(tc.body)] != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.target, w.Code, body, tc.code, tc.body)
		}
	}
}
