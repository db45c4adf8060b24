package redisurl_test

import (
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/redisurl"
	"github.com/floodgate/floodgate/internal/redisurl/redisurltest"
)

func TestRedact(t *testing.T) {
	for in, want := range redisurltest.Redactions {
		if got := redisurl.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRedactHostile: no secret of the shared hostile table survives.
func TestRedactHostile(t *testing.T) {
	for _, h := range redisurltest.HostileURLs {
		got := redisurl.Redact(h.URL)
		for _, s := range h.Secrets {
			if strings.Contains(got, s) {
				t.Errorf("Redact(%q) = %q shows %q", h.URL, got, s)
			}
		}
		if !strings.Contains(got, redisurl.Redacted) {
			t.Errorf("Redact(%q) = %q hides nothing", h.URL, got)
		}
	}
}

// FuzzRedact: a password in the userinfo of any URL, or in a secret query
// parameter, never comes out of Redact, whatever surrounds it; what Redact
// returns holds no password Parse would find; Redact never panics. (Passwords holding "://" are left out: after an unencoded
// '@' in a password, a scheme starts a new URL, as it does for Parse.)
func FuzzRedact(f *testing.F) {
	for _, s := range [][4]string{
		{"redis", "alice", "Tr0ub4dor", "h:1/0"},
		{"rediss", "", "p w{d}", "h:1?skip_verify=true"},
		{"redis-sentinel", "u", "Tr0,ub4", "s1,s2/m?sentinel_password=Zyx9"},
		{"redis", "u", "a@b/c?d#e", "h1:1,redis://u:q@h2:2"},
		{"", "u", "secret", "h:1"},
		{"unix", "", "pw%zz", "/run/r.sock?db=1"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	for _, h := range redisurltest.HostileURLs {
		f.Add("", "", "", h.URL)
	}
	f.Fuzz(func(t *testing.T, scheme, user, pass, rest string) {
		// What Parse would take for a password, Redact has hidden: the
		// redacted URL parses, if at all, with no password but "xxxxx".
		if o, err := redisurl.Parse("X", redisurl.Redact(rest)); err == nil {
			for _, pw := range []string{o.Password, o.SentinelPassword} {
				if pw != "" && pw != redisurl.Redacted {
					t.Fatalf("Redact(%q) = %q still holds the password %q", rest, redisurl.Redact(rest), pw)
				}
			}
		}
		if len(pass) < 4 || strings.Contains(pass, "://") || strings.Contains(pass, "x") ||
			strings.ContainsAny(user, "@") || strings.Contains(user, "://") || strings.Contains(scheme+"://"+user, "@") {
			return
		}
		prefix := ""
		if scheme != "" {
			prefix = scheme + "://"
		}
		u := prefix + user + ":" + pass + "@" + rest
		visible := prefix + user + ":" + redisurl.Redacted + "@" + rest
		if got := redisurl.Redact(u); strings.Contains(got, pass) && !strings.Contains(visible, pass) {
			t.Fatalf("Redact(%q) = %q shows the password %q", u, got, pass)
		}
		if strings.Contains(pass, "&") {
			return
		}
		for _, key := range []string{"password", "sentinel_password"} {
			q := prefix + "h:1?db=0&" + key + "=" + pass
			if rest != "" {
				q += "&" + rest
			}
			visible := prefix + "h:1?db=0&" + key + "=" + redisurl.Redacted + "&" + rest
			if got := redisurl.Redact(q); strings.Contains(got, pass) && !strings.Contains(visible, pass) {
				t.Fatalf("Redact(%q) = %q shows the password %q", q, got, pass)
			}
		}
	})
}
