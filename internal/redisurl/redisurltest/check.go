package redisurltest

import (
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"

	"github.com/floodgate/floodgate/internal/redisurl"
)

// Check runs run once per hostile URL, each in a subtest named by its
// number (t.TempDir's path would otherwise hold the URL). The URL's
// 127.0.0.1:1 becomes a miniredis; when parse takes the URL for one plain
// TCP node, the miniredis requires the URL's credentials and served is
// true, so the run can get through to what it shows after connecting.
// run returns what it showed, by where (stdout, a report file, the
// error), and whether it got through. Check fails the test for each
// secret shown anywhere, and when no URL got through (the paths after
// connecting went untested).
//
// Whether a URL is served is decided with redisurl.Parse, which
// limiter.ParseRedisURL (what the commands call) wraps.
func Check(t *testing.T, run func(t *testing.T, url string, served bool) (shown map[string]string, ran bool)) {
	t.Helper()
	ran := 0
	for i, h := range HostileURLs {
		if LeftOutByShort(i) {
			continue
		}
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Logf("URL %q", h.URL)
			m := miniredis.RunT(t)
			u := strings.ReplaceAll(h.URL, "127.0.0.1:1", m.Addr())
			o, err := redisurl.Parse("REDIS_URL", u)
			served := err == nil && len(o.Addrs) == 1 && !o.IsClusterMode && o.MasterName == "" &&
				!strings.HasPrefix(u, "unix") && o.TLSConfig == nil
			if served {
				if o.Username != "" {
					m.RequireUserAuth(o.Username, o.Password)
				} else {
					m.RequireAuth(o.Password)
				}
			}
			shown, ok := run(t, u, served)
			if ok {
				ran++
			}
			for where, s := range shown {
				for _, sec := range h.Secrets {
					if strings.Contains(s, sec) {
						t.Errorf("%s shows %q:\n%s", where, sec, s)
					}
				}
			}
		})
	}
	if ran == 0 {
		t.Fatal("no hostile URL got through: the paths after connecting went untested")
	}
}

// LeftOutByShort reports whether go test -short leaves out HostileURLs[i]
// in the commands' tests, which run each URL through whole commands (up
// to a second each): the fast tier keeps every third, which still holds
// one URL of each form the table groups.
func LeftOutByShort(i int) bool { return testing.Short() && i%3 != 0 }
