package limiter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisurl/redisurltest"
)

// TestParseRedisURL: one URL of each kind becomes options for the right
// client, bounded by the context (the forms are tested in redisurl).
func TestParseRedisURL(t *testing.T) {
	for _, tc := range []struct {
		url             string
		cluster, master bool
	}{
		{"redis://alice:s3cret@h:6379/2", false, false},
		{"h1:7000,h2:7001", true, false},
		{"redis+sentinel://:pw@s1,s2/mymaster/3", false, true},
	} {
		o, err := ParseRedisURL(tc.url, 250*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if o.IsClusterMode != tc.cluster || (o.MasterName != "") != tc.master || !o.ContextTimeoutEnabled {
			t.Errorf("%s: cluster %v, master %q, context timeouts %v", tc.url, o.IsClusterMode, o.MasterName, o.ContextTimeoutEnabled)
		}
	}
}

// TestParseRedisURLErrors: errors start with "limiter: " and name the
// variable (the reasons are tested in redisurl).
func TestParseRedisURLErrors(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // in the error, besides "limiter: " and FLOODGATE_REDIS_URL
	}{
		{"", "REDIS_URL"},
		{"   ", "REDIS_URL"},
		{"http://h:1", `unknown scheme "http"`},
		{"redis://alice:Tr0ub4dor@h:abc", `"redis://alice:xxxxx@h:abc"`},
		{"redis://alice:Tr0ub/4dor&3@h:1", "URL not shown"},
		{"redis-sentinel://s1:26379", "master's name"},
	} {
		_, err := ParseRedisURL(tc.url, time.Second)
		if err == nil {
			t.Errorf("%q: no error, want one containing %q", tc.url, tc.want)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "limiter: ") || !strings.Contains(msg, "FLOODGATE_REDIS_URL") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "Tr0ub") {
			t.Errorf("%q: error %q, want it to start with \"limiter: \", name FLOODGATE_REDIS_URL, contain %q and no password", tc.url, msg, tc.want)
		}
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

func TestParseRedisURLTimeoutRange(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second, 2 * time.Minute} {
		_, err := ParseRedisURL("redis://h:1", d)
		if err == nil || !strings.Contains(err.Error(), "RedisTimeout (FLOODGATE_REDIS_TIMEOUT)") {
			t.Errorf("timeout %v: error %v, want one naming RedisTimeout (FLOODGATE_REDIS_TIMEOUT)", d, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range redisurltest.Redactions {
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
	l := clientLimiter(t, cfg)
	if d, err := l.Allow(ctx, "alice"); err != nil || d != (Decision{Allowed: true, Remaining: 19, ResetAfter: time.Hour}) {
		t.Fatalf("Allow = %+v, %v", d, err)
	}

	cfg.RedisURL = "redis://bot:WrongPassw0rd@" + mr.Addr()
	_, err := clientLimiter(t, cfg).Allow(ctx, "alice")
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

func ExampleRedactURL() {
	fmt.Println(RedactURL("redis://bot:s3cret@cache:6379/0"))
	fmt.Println(RedactURL("redis-sentinel://s1,s2/mymaster?sentinel_password=s3cret"))
	fmt.Println(RedactURL("redis://bot:pass word@cache:6379")) // url.Parse rejects it
	// Output:
	// redis://bot:xxxxx@cache:6379/0
	// redis-sentinel://s1,s2/mymaster?sentinel_password=xxxxx
	// redis://bot:xxxxx@cache:6379
}

func ExampleParseRedisURL() {
	o, err := ParseRedisURL("redis+sentinel://:s3cret@s1,s2:26380/mymaster/2", 500*time.Millisecond)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(o.MasterName, o.Addrs, o.DB, o.ReadTimeout)
	_, err = ParseRedisURL("redis://bot:s3cret@cache:port", time.Second)
	fmt.Println(err)
	// Output:
	// mymaster [s1:26379 s2:26380] 2 500ms
	// limiter: FLOODGATE_REDIS_URL "redis://bot:xxxxx@cache:port": port "port" is not a number from 1 to 65535
}
