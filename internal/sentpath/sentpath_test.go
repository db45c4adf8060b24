package sentpath

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for target, ok := range map[string]bool{
		"/v1/users/alice": true, "/v1/users/": true, "/": true, "/v1/users/%2E%2E": true, "/v1/users/%2F": true,
		"/v1/users/..": false, "/v1/users/.": false, "/v1/users/a/../b": false, "//v1/users/a": false, "/v1//a": false, "*": false,
	} {
		err := Check(httptest.NewRequest("OPTIONS", target, nil))
		if ok != (err == nil) || err != nil && !strings.HasPrefix(err.Error(), "sentpath: ") {
			t.Errorf("%s: %v, want ok %v", target, err, ok)
		}
	}
}

// A value of exactly "/" (%2F, any case) reaches its route whole, in any
// position, as does one with a slash inside; a path without one is left
// alone.
func TestRouteRestore(t *testing.T) {
	mux := http.NewServeMux()
	for _, p := range []string{"GET /v1/users/{user}", "POST /v1/backoff/{name}/endpoints/{endpoint}/failure"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			Restore(r)
			_, _ = w.Write([]byte(r.PathValue("user") + "|" + r.PathValue("name") + "|" + r.PathValue("endpoint")))
		})
	}
	for _, tc := range []struct{ method, target, want string }{
		{"GET", "/v1/users/%2F", "/||"},
		{"GET", "/v1/users/%2f", "/||"},
		{"GET", "/v1/users/a%2Fb", "a/b||"},
		{"GET", "/v1/users/alice", "alice||"},
		{"POST", "/v1/backoff/%2F/endpoints/%2F/failure", "|/|/"},
		{"POST", "/v1/backoff/b/endpoints/%2F/failure", "|b|/"},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		routed := Route(r)
		standIn := slices.ContainsFunc(strings.Split(tc.target, "/"), func(seg string) bool { return strings.EqualFold(seg, "%2F") })
		if changed := routed != r; changed != standIn {
			t.Errorf("%s: Route changed the request: %v, want %v", tc.target, changed, standIn)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, routed)
		if w.Code != 200 || w.Body.String() != tc.want {
			t.Errorf("%s %s: %d %q, want %q", tc.method, tc.target, w.Code, w.Body.String(), tc.want)
		}
	}
}
