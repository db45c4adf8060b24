// Package sentpath lets http.ServeMux route a request on its path as the
// client sent it. ServeMux answers a path with an empty, "." or ".."
// segment with a redirect to another path (for an API, another user or
// name), which Check refuses instead; and (Go 1.26) it mistakes a
// segment that decodes to "/" (sent as %2F) for a trailing slash and
// answers 404, which Route and Restore work around, so a path value of
// exactly "/" works like any other.
package sentpath

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// Check says what is wrong with r's target, if ServeMux would answer it
// with a redirect or plain text: it is no path ("*"), or it has an empty,
// "." or ".." segment anywhere. A trailing slash is allowed: no route,
// not an empty value.
func Check(r *http.Request) error {
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		return errors.New("sentpath: request target must be a path starting with '/'")
	}
	for rest := path[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		if (seg == "" && more) || seg == "." || seg == ".." {
			return errors.New("sentpath: path has an empty, '.' or '..' segment: user ids and names must be non-empty, and '.' is sent as %2E")
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// standIn is what Route puts in place of a %2F segment for the mux.
const standIn = "_"

type sentKey struct{}

// Route returns r with each segment that is exactly %2F replaced by a
// stand-in the mux routes like any value, remembering the path as sent
// for Restore; r itself when it has none.
func Route(r *http.Request) *http.Request {
	sent := r.URL.EscapedPath()
	if !strings.Contains(sent, "/%2F") && !strings.Contains(sent, "/%2f") {
		return r
	}
	segs := strings.Split(sent, "/")
	changed := false
	for i, seg := range segs {
		if strings.EqualFold(seg, "%2F") {
			segs[i], changed = standIn, true
		}
	}
	if !changed {
		return r
	}
	r = r.WithContext(context.WithValue(r.Context(), sentKey{}, sent))
	u := *r.URL
	u.RawPath = strings.Join(segs, "/")
	u.Path, _ = url.PathUnescape(u.RawPath) // it was a valid path before
	r.URL = &u
	return r
}

// Restore sets r's path values from the path as sent, once the mux has
// matched r's pattern: call it first in every handler. It does nothing
// unless Route changed r.
func Restore(r *http.Request) {
	sent, ok := r.Context().Value(sentKey{}).(string)
	if !ok {
		return
	}
	_, pattern, _ := strings.Cut(r.Pattern, " ")
	want, got := strings.Split(pattern, "/"), strings.Split(sent, "/")
	for i, p := range want {
		if name, ok := strings.CutPrefix(p, "{"); ok && i < len(got) {
			if v, err := url.PathUnescape(got[i]); err == nil {
				r.SetPathValue(strings.TrimSuffix(name, "}"), v)
			}
		}
	}
}
