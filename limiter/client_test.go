package limiter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisurl/redisurltest"
)

// parsed is what ParseRedisURL must produce, in the fields that matter.
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

func TestParseRedisURL(t *testing.T) {
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
			o, err := ParseRedisURL(tc.url, 250*time.Millisecond)
			if err != nil {
				t.Fatalf("ParseRedisURL: %v", err)
			}
			if got := summarize(o); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("\n got %+v\nwant %+v", got, tc.want)
			}
			if !o.ContextTimeoutEnabled {
				t.Fatal("ContextTimeoutEnabled is false")
			}
			if o.TLSConfig != nil && (o.TLSConfig.ServerName != "" || o.TLSConfig.MinVersion != tls.VersionTLS12) {
				t.Fatalf("TLS config %+v: want no ServerName (checked per node) and TLS 1.2 at least", o.TLSConfig)
			}
		})
	}
}

func TestParseRedisURLTimeouts(t *testing.T) {
	for _, tc := range []struct {
		url                      string
		timeout                  time.Duration
		read, write, dial, retry time.Duration
		retries                  int
	}{
		{"redis://h:1", 250 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond, time.Second, 125 * time.Millisecond, 1},
		{"redis://h:1", 2 * time.Second, 2 * time.Second, 2 * time.Second, 4 * time.Second, time.Second, 1},
		{"h1:1,h2:2", 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, time.Second, 50 * time.Millisecond, 1},
		// What the URL says wins; read_timeout also sets the write timeout.
		{"redis://h:1?dial_timeout=3s&read_timeout=2s&max_retries=5&max_retry_backoff=1s", 250 * time.Millisecond, 2 * time.Second, 2 * time.Second, 3 * time.Second, time.Second, 5},
		{"redis://h:1?write_timeout=1s&max_retries=-1", 250 * time.Millisecond, 250 * time.Millisecond, time.Second, time.Second, 125 * time.Millisecond, -1},
	} {
		o, err := ParseRedisURL(tc.url, tc.timeout)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		got := []any{o.ReadTimeout, o.WriteTimeout, o.DialTimeout, o.MaxRetryBackoff, o.MaxRetries}
		want := []any{tc.read, tc.write, tc.dial, tc.retry, tc.retries}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s with %v: read, write, dial, retry backoff, retries = %v, want %v", tc.url, tc.timeout, got, want)
		}
	}
}

func TestParseRedisURLOptionsCarryOver(t *testing.T) {
	o, err := ParseRedisURL("redis://h:1?pool_size=7&client_name=bot&protocol=2&min_idle_conns=2", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if o.PoolSize != 7 || o.ClientName != "bot" || o.Protocol != 2 || o.MinIdleConns != 2 {
		t.Fatalf("pool_size, client_name, protocol, min_idle_conns = %d %q %d %d, want 7 bot 2 2", o.PoolSize, o.ClientName, o.Protocol, o.MinIdleConns)
	}
	o, err = ParseRedisURL("h1:1,h2:2?max_redirects=5&route_randomly=true", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxRedirects != 5 || !o.RouteRandomly {
		t.Fatalf("max_redirects, route_randomly = %d %v, want 5 true", o.MaxRedirects, o.RouteRandomly)
	}
}

func TestParseRedisURLErrors(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // in the error, besides "limiter: FLOODGATE_REDIS_URL"
	}{
		{"", "REDIS_URL"},
		{"   ", "REDIS_URL"},
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
		{"unix://", "needs a socket path"},
		{"unix://h/x", "takes a path"},
		{"unix:///s,unix:///t", "cannot be part of a Cluster"},
	} {
		_, err := ParseRedisURL(tc.url, time.Second)
		if err == nil {
			t.Errorf("%q: no error, want one containing %q", tc.url, tc.want)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "limiter: ") || !strings.Contains(msg, "FLOODGATE_REDIS_URL") || !strings.Contains(msg, tc.want) {
			t.Errorf("%q: error %q, want it to start with \"limiter: \", name FLOODGATE_REDIS_URL and contain %q", tc.url, msg, tc.want)
		}
	}
}

func TestParseRedisURLTimeoutRange(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second, 2 * time.Minute} {
		_, err := ParseRedisURL("redis://h:1", d)
		if err == nil || !strings.Contains(err.Error(), "RedisTimeout (FLOODGATE_REDIS_TIMEOUT)") {
			t.Errorf("timeout %v: error %v, want one naming RedisTimeout (FLOODGATE_REDIS_TIMEOUT)", d, err)
		}
	}
}

// TestParseRedisURLNeverShowsPassword feeds broken URLs holding passwords:
// errors must not contain the password, nor any piece of it that a broken
// URL split off, and should still show the rest of the URL when safe.
func TestParseRedisURLNeverShowsPassword(t *testing.T) {
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
		_, err := ParseRedisURL(tc.url, time.Second)
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

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://h:1":                                   "redis://h:1",
		"redis://alice:pw@h:1/2":                        "redis://alice:xxxxx@h:1/2",
		"redis://:pw@h:1":                               "redis://:xxxxx@h:1",
		"redis://pw@h:1":                                "redis://xxxxx@h:1",
		"redis://a:x@h1:1,redis://a:y@h2:2":             "redis://a:xxxxx@h1:1,redis://a:xxxxx@h2:2",
		"redis-sentinel://s/m?sentinel_password=p&db=1": "redis-sentinel://s/m?sentinel_password=xxxxx&db=1",
		"redis://h:1?password=p":                        "redis://h:1?password=xxxxx",
		"redis://alice:p w{@h:1":                        "redis://alice:xxxxx@h:1",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRedisURLSecretsNeverShow runs the shared table of hostile URLs
// through everything in the library that shows a URL: RedactURL, and the
// errors of ParseRedisURL and NewClient (for URLs they reject).
func TestRedisURLSecretsNeverShow(t *testing.T) {
	for _, h := range redisurltest.HostileURLs {
		shown := []string{RedactURL(h.URL)}
		if _, err := ParseRedisURL(h.URL, time.Second); err != nil {
			shown = append(shown, err.Error())
		}
		cfg := DefaultConfig()
		cfg.RedisURL = h.URL
		if rdb, err := NewClient(cfg); err != nil {
			shown = append(shown, err.Error())
		} else {
			rdb.Close()
		}
		for _, out := range shown {
			for _, sec := range h.Secrets {
				if strings.Contains(out, sec) {
					t.Errorf("%q: %q shows %q", h.URL, out, sec)
				}
			}
		}
		if !strings.Contains(shown[0], "xxxxx") {
			t.Errorf("RedactURL(%q) = %q hides nothing", h.URL, shown[0])
		}
	}
}

func TestNewClientKinds(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string
	}{
		{"redis://localhost:6379", "*redis.Client"},
		{"h1:1,h2:2", "*redis.ClusterClient"},
		{"redis-cluster://h1:1", "*redis.ClusterClient"},
		{"redis-sentinel://s1/m", "*redis.Client"},
	} {
		cfg := DefaultConfig()
		cfg.RedisURL = tc.url
		rdb, err := NewClient(cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if got := reflect.TypeOf(rdb).String(); got != tc.want {
			t.Errorf("%s: NewClient gave %s, want %s", tc.url, got, tc.want)
		}
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			if got := cc.Options().ClusterStateReloadInterval; got != clusterStateReload {
				t.Errorf("%s: slot map reloaded every %v, want %v", tc.url, got, clusterStateReload)
			}
		}
		rdb.Close()
	}
}

func TestNewClientEmptyURL(t *testing.T) {
	_, err := NewClient(DefaultConfig())
	if err == nil || !strings.Contains(err.Error(), "FLOODGATE_REDIS_URL") || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("NewClient without a URL: %v, want an error naming FLOODGATE_REDIS_URL and REDIS_URL", err)
	}
}

func TestNewClientTLSOption(t *testing.T) {
	pool := x509.NewCertPool()
	cfg := DefaultConfig()

	cfg.RedisURL = "redis://h:1"
	if _, err := NewClient(cfg, WithTLSConfig(&tls.Config{RootCAs: pool})); err == nil || !strings.Contains(err.Error(), "rediss://") {
		t.Fatalf("WithTLSConfig with redis://: %v, want an error asking for rediss://", err)
	}

	cfg.RedisURL = "rediss://h:1?skip_verify=true"
	given := &tls.Config{RootCAs: pool, ServerName: "redis.internal"}
	rdb, err := NewClient(cfg, WithTLSConfig(given))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	got := rdb.(*redis.Client).Options().TLSConfig
	if got == given || got.RootCAs != pool || got.ServerName != "redis.internal" || !got.InsecureSkipVerify {
		t.Fatalf("TLS config %+v: want a clone with the given RootCAs and ServerName, and skip_verify applied", got)
	}
	if given.InsecureSkipVerify {
		t.Fatal("NewClient changed the caller's tls.Config")
	}

	cfg.RedisURL = "rediss://h1:1,h2:2"
	crdb, err := NewClient(cfg, WithTLSConfig(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatal(err)
	}
	defer crdb.Close()
	if got := crdb.(*redis.ClusterClient).Options().TLSConfig; got == nil || got.RootCAs != pool {
		t.Fatalf("cluster TLS config %+v, want the given RootCAs", got)
	}
}

func TestNewClientRedisOptions(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RedisURL = "redis://h:1"
	rdb, err := NewClient(cfg, WithRedisOptions(func(o *redis.UniversalOptions) { o.PoolSize = 3 }), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if got := rdb.(*redis.Client).Options().PoolSize; got != 3 {
		t.Fatalf("PoolSize %d, want 3", got)
	}
}

// TestNewClientLimiter runs decisions through NewClient's client, with and
// without a password, and checks a wrong password's error.
func TestNewClientLimiter(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.SetTime(epoch)
	mr.RequireUserAuth("bot", "Tr0ub4dor")
	ctx := context.Background()

	cfg := userConfig(10*time.Second, 20, time.Hour)
	cfg.RedisURL = "redis://bot:Tr0ub4dor@" + mr.Addr()
	rdb, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	l, err := New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := l.Allow(ctx, "alice"); err != nil || d != (Decision{Allowed: true, Remaining: 19, ResetAfter: time.Hour}) {
		t.Fatalf("Allow = %+v, %v", d, err)
	}

	cfg.RedisURL = "redis://bot:WrongPassw0rd@" + mr.Addr()
	bad, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	lb, err := New(bad, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lb.Allow(ctx, "alice")
	if err == nil {
		t.Fatal("Allow with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "WrongPassw0rd") || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("error %q: want WRONGPASS, without the password", err)
	}
	if IsUnavailable(err) {
		t.Fatalf("error %q counts as Redis unavailable; a wrong password must not silently fall back", err)
	}
	var re redis.Error
	if !errors.As(err, &re) {
		t.Fatalf("error %q does not wrap the Redis error", err)
	}
}
