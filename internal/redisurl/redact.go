package redisurl

import (
	"net/url"
	"sort"
	"strings"
)

// Redacted replaces each secret that Redact hides.
const Redacted = "xxxxx"

// Redact returns s with every part that could be a secret replaced by
// "xxxxx", so that it can be logged, printed or put in a report. It never
// fails and never returns a secret, whether or not Parse accepts s:
//
//   - userinfo: everything between a scheme's "://" (or the start) and the
//     '@' that ends the credentials, the last one before the next URL of a
//     list (a password may hold unencoded '@', '/', '?', '#', ',', spaces
//     or braces; url.Parse rejects such URLs, Parse may not). A plain user
//     name is kept: "redis://alice:xxxxx@host".
//   - query values whose key names a secret (password, sentinel_password,
//     token, auth, secret, key, credentials..., percent-encoded or not).
//
// Everything else is returned as given, so an operator can still see which
// host was meant. Where the structure is ambiguous, more is hidden.
func Redact(s string) string {
	spans := append(credSpans(s), querySpans(s)...)
	if len(spans) == 0 {
		return s
	}
	spans = mergeSpans(spans)
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.lo])
		b.WriteString(hide(s[sp.lo:sp.hi], sp.cred))
		last = sp.hi
	}
	b.WriteString(s[last:])
	return b.String()
}

// span is a byte range of the input to hide; cred marks userinfo, whose
// user name may stay.
type span struct {
	lo, hi int
	cred   bool
}

// credSpans finds userinfo. Each '@' ends credentials that start after the
// first "scheme://" since the previous '@' (or the start); an '@' with no
// scheme since the previous one belongs to the same password, whose span
// it extends.
func credSpans(s string) []span {
	var out []span
	prev := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '@' {
			continue
		}
		switch m := firstMarker(s[prev:i]); {
		case m >= 0:
			out = append(out, span{prev + m, i, true})
		case len(out) > 0:
			out[len(out)-1].hi = i
		default:
			// No scheme: Parse rejects credentials here, and where they
			// start is a guess, so no user name is shown.
			out = append(out, span{0, i, false})
		}
		prev = i + 1
	}
	return out
}

// firstMarker returns the index just past the first "scheme://" in s, or -1.
func firstMarker(s string) int {
	for from := 0; ; {
		i := strings.Index(s[from:], "://")
		if i < 0 {
			return -1
		}
		i += from
		if i > 0 && isSchemeByte(s[i-1]) {
			return i + 3
		}
		from = i + 3
	}
}

func isSchemeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'
}

// querySpans finds the values of secret-naming query keys. A value ends
// at '&'; in a comma-separated list of URLs also where the next URL's
// "scheme://" starts (Parse splits such lists at commas). The Cluster and
// Sentinel schemes take one URL, whose query may hold commas.
func querySpans(s string) []span {
	sc, _ := splitScheme(strings.TrimSpace(s))
	_, cl := clusterSchemes[sc]
	_, se := sentinelSchemes[sc]
	list := !cl && !se
	var out []span
	for i := 0; i < len(s); i++ {
		if s[i] != '?' && s[i] != '&' {
			continue
		}
		eq := strings.IndexAny(s[i+1:], "=&")
		if eq < 0 || s[i+1+eq] != '=' {
			continue
		}
		key := s[i+1 : i+1+eq]
		if !secretKey(key) {
			continue
		}
		lo := i + 1 + eq + 1
		hi := valueEnd(s, lo, list)
		if hi > lo {
			out = append(out, span{lo, hi, false})
		}
	}
	return out
}

func valueEnd(s string, lo int, list bool) int {
	for j := lo; j < len(s); j++ {
		switch s[j] {
		case '&':
			return j
		case ',':
			if list && startsWithScheme(strings.TrimLeft(s[j+1:], " \t")) {
				return j
			}
		}
	}
	return len(s)
}

// startsWithScheme reports whether s begins with "scheme://".
func startsWithScheme(s string) bool {
	sc, _ := splitScheme(s)
	return sc != ""
}

// secretWords are the fragments of a query key that mark its value secret.
var secretWords = []string{"pass", "pwd", "secret", "token", "auth", "cred", "key"}

func secretKey(k string) bool {
	if d, err := url.QueryUnescape(k); err == nil {
		k = d
	}
	k = strings.ToLower(k)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// mergeSpans sorts spans and joins those that touch; a join of userinfo
// with anything else is hidden whole.
func mergeSpans(spans []span) []span {
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp.lo <= last.hi {
			last.hi = max(last.hi, sp.hi)
			last.cred = false
			continue
		}
		out = append(out, sp)
	}
	return out
}

// hide renders one span: userinfo keeps a plain user name ("alice:xxxxx",
// ":xxxxx" for a password alone); anything else is "xxxxx".
func hide(s string, cred bool) string {
	if s == "" {
		return ""
	}
	if user, _, ok := strings.Cut(s, ":"); cred && ok && plainUser(user) && !strings.Contains(s, "://") {
		return user + ":" + Redacted
	}
	return Redacted
}

// plainUser reports whether a user name can be shown: nothing in it could
// be the structure of a URL run together with a password.
func plainUser(u string) bool {
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(",/?#@&=[]{}<>\"'\\^`|", c) >= 0 {
			return false
		}
	}
	return true
}
