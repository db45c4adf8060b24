package redisurl

import (
	"crypto/tls"
	"reflect"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// parsed is what Parse must produce, in the fields that matter.
type parsed struct {
	kind       string // "single", "cluster" or "sentinel"
	addrs      []string
	db         int
	user, pass string
	tls, skip  bool
	master     string
	sentPass   string
}

func summarize(o *redis.UniversalOptions) parsed {
	p := parsed{kind: "single", addrs: o.Addrs, db: o.DB, user: o.Username, pass: o.Password, master: o.MasterName, sentPass: o.SentinelPassword}
	switch {
	case o.MasterName != "":
		p.kind = "sentinel"
	case o.IsClusterMode:
		p.kind = "cluster"
	}
	if o.TLSConfig != nil {
		p.tls, p.skip = true, o.TLSConfig.InsecureSkipVerify
	}
	return p
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want parsed
	}{
		{"redis://localhost:6379", parsed{kind: "single", addrs: []string{"localhost:6379"}}},
		{"  redis://localhost  ", parsed{kind: "single", addrs: []string{"localhost:6379"}}},
		{"REDIS://cache:7000", parsed{kind: "single", addrs: []string{"cache:7000"}}},
		{"localhost:6380", parsed{kind: "single", addrs: []string{"localhost:6380"}}},
		{"10.0.0.7", parsed{kind: "single", addrs: []string{"10.0.0.7:6379"}}},
		{"redis://alice:s3cret@h:6379/2", parsed{kind: "single", addrs: []string{"h:6379"}, db: 2, user: "alice", pass: "s3cret"}},
		{"redis://:p%40ss%3Aw%2Frd@h:1", parsed{kind: "single", addrs: []string{"h:1"}, pass: "p@ss:w/rd"}},
		{"redis://h:1/0?db=5", parsed{kind: "single", addrs: []string{"h:1"}, db: 5}},
		{"redis://[::1]:7000", parsed{kind: "single", addrs: []string{"[::1]:7000"}}},
		{"redis://[::1]", parsed{kind: "single", addrs: []string{"[::1]:6379"}}},
		{"rediss://h:6380", parsed{kind: "single", addrs: []string{"h:6380"}, tls: true}},
		{"rediss://h:6380?skip_verify=true", parsed{kind: "single", addrs: []string{"h:6380"}, tls: true, skip: true}},
		{"rediss://h:6380?skip_verify=false", parsed{kind: "single", addrs: []string{"h:6380"}, tls: true}},
		{"unix:///run/redis.sock?db=3", parsed{kind: "single", addrs: []string{"/run/redis.sock"}, db: 3}},
		{"unix://:pw@/run/redis.sock", parsed{kind: "single", addrs: []string{"/run/redis.sock"}, pass: "pw"}},

		{"h1:7000,h2:7001,h3:7002", parsed{kind: "cluster", addrs: []string{"h1:7000", "h2:7001", "h3:7002"}}},
		{"redis://h1:7000, redis://h2:7001", parsed{kind: "cluster", addrs: []string{"h1:7000", "h2:7001"}}},
		{"redis://u:p@h1:7000,h2:7001", parsed{kind: "cluster", addrs: []string{"h1:7000", "h2:7001"}, user: "u", pass: "p"}},
		{"redis://u:p@h1:1,redis://u:p@h2:2", parsed{kind: "cluster", addrs: []string{"h1:1", "h2:2"}, user: "u", pass: "p"}},
		{"h1:1,redis://h2:2/0", parsed{kind: "cluster", addrs: []string{"h1:1", "h2:2"}}},
		{"rediss://h1:1,h2:2?skip_verify=true", parsed{kind: "cluster", addrs: []string{"h1:1", "h2:2"}, tls: true, skip: true}},
		{"redis://h1:7000?addr=h2:7001&addr=h3:7002", parsed{kind: "cluster", addrs: []string{"h1:7000", "h2:7001", "h3:7002"}}},
		{"redis://h1:7000?addr=h2", parsed{kind: "cluster", addrs: []string{"h1:7000", "h2:6379"}}},
		{"redis-cluster://h1:7000", parsed{kind: "cluster", addrs: []string{"h1:7000"}}},
		{"redis+cluster://h1:7000,h2", parsed{kind: "cluster", addrs: []string{"h1:7000", "h2:6379"}}},
		{"rediss-cluster://:pw@cfg.example.com", parsed{kind: "cluster", addrs: []string{"cfg.example.com:6379"}, pass: "pw", tls: true}},

		{"redis-sentinel://s1:26379,s2:26380/mymaster", parsed{kind: "sentinel", addrs: []string{"s1:26379", "s2:26380"}, master: "mymaster"}},
		{"redis+sentinel://:pw@s1,s2/mymaster/3", parsed{kind: "sentinel", addrs: []string{"s1:26379", "s2:26379"}, master: "mymaster", db: 3, pass: "pw"}},
		{"rediss-sentinel://s1/mm?sentinel_password=sp", parsed{kind: "sentinel", addrs: []string{"s1:26379"}, master: "mm", tls: true, sentPass: "sp"}},
		{"redis-sentinel://s1?master_name=mm", parsed{kind: "sentinel", addrs: []string{"s1:26379"}, master: "mm"}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			o, err := Parse("FLOODGATE_REDIS_URL", tc.url)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := summarize(o); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("\n got %+v\nwant %+v", got, tc.want)
			}
			if o.TLSConfig != nil && (o.TLSConfig.ServerName != "" || o.TLSConfig.MinVersion != tls.VersionTLS12) {
				t.Fatalf("TLS config %+v: want no ServerName (checked per node) and TLS 1.2 at least", o.TLSConfig)
			}
		})
	}
}

func TestParseOptionsCarryOver(t *testing.T) {
	o, err := Parse("FLOODGATE_REDIS_URL", "redis://h:1?pool_size=7&client_name=bot&protocol=2&min_idle_conns=2")
	if err != nil {
		t.Fatal(err)
	}
	if o.PoolSize != 7 || o.ClientName != "bot" || o.Protocol != 2 || o.MinIdleConns != 2 {
		t.Fatalf("pool_size, client_name, protocol, min_idle_conns = %d %q %d %d, want 7 bot 2 2", o.PoolSize, o.ClientName, o.Protocol, o.MinIdleConns)
	}
	o, err = Parse("FLOODGATE_REDIS_URL", "h1:1,h2:2?max_redirects=5&route_randomly=true")
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxRedirects != 5 || !o.RouteRandomly {
		t.Fatalf("max_redirects, route_randomly = %d %v, want 5 true", o.MaxRedirects, o.RouteRandomly)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // in the error, besides "FLOODGATE_REDIS_URL"
	}{
		{"", "entry 1 of the comma-separated list is empty"},
		{"http://h:1", `unknown scheme "http"`},
		{"redis://h:abc", `port "abc"`},
		{"redis://h:0", `port "0"`},
		{"redis://h:70000", `port "70000"`},
		{"redis://h:+1", `port "+1"`},
		{"redis://:6379", "no host"},
		{"redis://", "host is missing"},
		{"::1", "brackets"},
		{"redis://h x:1", "characters a host name cannot have"},
		{"redis://h:1/x", "invalid database number"},
		{"redis://h:1/1/2", "invalid URL path"},
		{"redis://h:1/%zz", "path is not percent-encoded"},
		{"redis://h:1?bogus=1", "unexpected option: bogus"},
		{"redis://h:1?dial_timeout=xyz", "dial_timeout"},
		{"redis://h:1?a=%zz", "not a valid query string"},
		{"redis://h:1#frag", "fragment"},
		{"redis://h:1?skip_verify=true", "rediss://"},
		{"rediss://h:1?skip_verify=maybe", "skip_verify"},
		{"redis://alice@h:1", "user name without a password"},
		{"h1:1,,h2:2", "entry 2 of the comma-separated list is empty"},
		{"h1:1,", "entry 2"},
		{"redis://h1:1,rediss://h2:2", "mix redis:// and rediss://"},
		{"redis://h1:1/3,h2:2", "only database 0"},
		{"h1:1,h2:2?db=1", "only database 0"},
		{"redis://u:a1@h1:1,redis://u:b2@h2:2", "different credentials"},
		{"redis://h1:1?pool_size=1,redis://h2:2?pool_size=2", "options once"},
		{"redis://h1:1?addr=h2:x", `port "x"`},
		{"redis-cluster://h1:1,redis-cluster://h2:2", "write the scheme once"},
		{"h1:1,redis-cluster://h2:2", "in one URL"},
		{"redis-cluster://h1:1/2", "only database 0"},
		{"redis-sentinel://s1:26379", "master's name"},
		{"redis-sentinel://s1/m/1/2", "/master[/db]"},
		{"redis-sentinel://s1/m?master_name=n", "both"},
		{"redis-sentinel://s1/m/x", "invalid database number"},
		{"h1:1,redis-sentinel://s/m", "list the sentinels"},
		// Redis-Sentinel-Url's options are not read (documented).
		{"redis+sentinel://s1/m?service_name=m", "unexpected option: service_name"},
		{"redis+sentinel://s1/m?client_type=slave", "unexpected option: client_type"},
		{"unix://", "needs a socket path"},
		{"unix://h/x", "takes a path"},
		{"unix:///s,unix:///t", "cannot be part of a Cluster"},
	} {
		_, err := Parse("FLOODGATE_REDIS_URL", tc.url)
		if err == nil {
			t.Errorf("%q: no error, want one containing %q", tc.url, tc.want)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "FLOODGATE_REDIS_URL") || !strings.Contains(msg, tc.want) {
			t.Errorf("%q: error %q, want it to start with FLOODGATE_REDIS_URL and contain %q", tc.url, msg, tc.want)
		}
	}
}

// TestParseNeverShowsPassword feeds broken URLs holding passwords:
// errors must not contain the password, nor any piece of it that a broken
// URL split off, and should still show the rest of the URL when safe.
func TestParseNeverShowsPassword(t *testing.T) {
	for _, tc := range []struct {
		url     string
		secrets []string // none may appear in the error
		shows   string   // the error still shows this (redacted) context
	}{
		{"redis://alice:Tr0ub4dor@h:abc", []string{"Tr0ub4dor"}, `"redis://alice:xxxxx@h:abc"`},
		{"redis://:Tr0ub4dor@h:1/x", []string{"Tr0ub4dor"}, `"redis://:xxxxx@h:1/x"`},
		{"redis://alice:Tr0ub4dor@h:1?bogus=1", []string{"Tr0ub4dor"}, "bogus"},
		{"redis://alice:Tr0ub4dor@h:1:2", []string{"Tr0ub4dor"}, "alice:xxxxx@"},
		{"redis://alice:Tr0ub4dor@:1", []string{"Tr0ub4dor"}, "no host"},
		{"redis://alice:Tr0ub4dor@h:1/abc", []string{"Tr0ub4dor"}, "invalid database number"},
		{"rediss://alice:Tr0ub4dor@h:1?skip_verify=x", []string{"Tr0ub4dor"}, "skip_verify"},
		{"redis://alice:Tr0ub%344dor@h:abc", []string{"Tr0ub%344dor", "Tr0ub44dor"}, "alice:xxxxx@"},
		// Special characters that break the URL's structure: nothing of the
		// password may show, not even the piece before or after them.
		{"redis://alice:Tr0ub/4dor&3@h:1", []string{"Tr0ub", "4dor&3"}, "percent-encode"},
		{"redis://alice:Tr0ub,4dor&3@h1:1,h2:2", []string{"Tr0ub", "4dor&3"}, "%2C"},
		{"redis://alice:Tr0ub?4dor&3@h:1", []string{"Tr0ub", "4dor&3"}, "percent-encode"},
		{"redis://alice:Tr0ub#4dor&3@h:1", []string{"Tr0ub", "4dor&3"}, "percent-encode"},
		{"redis://alice:Tr0ub%zz4dor@h:1", []string{"Tr0ub", "4dor"}, "percent-encoded"},
		{"redis://Tr0ub4dor@h:1", []string{"Tr0ub4dor"}, "without a password"},
		{"Tr0ub4dor@h:1", []string{"Tr0ub4dor"}, "need a scheme"},
		{"redis://alice:Tr0ub4dor@h1:1,redis://alice:other1234@h2:2", []string{"Tr0ub4dor", "other1234"}, "different credentials"},
		{"redis-sentinel://:Tr0ub4dor@s1:1/m?sentinel_password=Zyxw9876&bogus=1", []string{"Tr0ub4dor", "Zyxw9876"}, "sentinel_password=xxxxx"},
		{"redis-sentinel://s1/m?password=Tr0ub4dor&bogus=1", []string{"Tr0ub4dor"}, "password=xxxxx"},
		{"redis://h:1?password=Tr0ub4dor", []string{"Tr0ub4dor"}, "unexpected option: password"},
		// The password is also a word of the message: scrubbed anyway.
		{"redis://alice:database@h:1/abc", []string{"database"}, "alice:xxxxx@"},
	} {
		_, err := Parse("FLOODGATE_REDIS_URL", tc.url)
		if err == nil {
			t.Errorf("%q: no error", tc.url)
			continue
		}
		msg := err.Error()
		for _, s := range tc.secrets {
			if strings.Contains(msg, s) {
				t.Errorf("%q: error %q shows %q", tc.url, msg, s)
			}
		}
		if !strings.Contains(msg, tc.shows) {
			t.Errorf("%q: error %q, want it to contain %q", tc.url, msg, tc.shows)
		}
	}
}

// TestParseErrorsArePrintable: what a URL holds reaches an error quoted,
// including what go-redis's own messages would print raw (issue 11 item
// 6: a newline forges a log line).
func TestParseErrorsArePrintable(t *testing.T) {
	for _, u := range []string{
		"redis://h:1?a%0Ab=1",                  // go-redis: unexpected option
		"h1:1,h2:2?a%0Ab=1",                    // the same, Cluster
		"redis-sentinel://s/m?x%0Ay=1",         // the same, Sentinel
		"redis://h:1/%0A",                      // database number
		"redis://h:1?dial_timeout=%0A",         // duration
		"redis-sentinel://s/m%0Ax",             // master name
		"redis-sentinel://s?master_name=a%20b", // master name
		"redis://h%0A:1",                       // host
		"redis://h:1\nx",                       // port
		"unknown\n://h",                        // scheme
	} {
		_, err := Parse("FLOODGATE_REDIS_URL", u)
		if err == nil {
			t.Errorf("%q: accepted", u)
			continue
		}
		if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Errorf("%q: error %q holds a control character", u, err)
		}
	}
}
