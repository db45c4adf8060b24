package limiter

import (
	"context"
	"errors"
	"math"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisurl"
)

// Fuzz targets. Seeds live in testdata/fuzz/<FuzzName>/; CI runs each one
// briefly:
//
//	go test ./limiter -run '^$' -fuzz '^FuzzUserKey$' -fuzztime 10s
//	(and FuzzAllowUser, FuzzAPIRates, FuzzParseDuration, FuzzConfigFromEnv,
//	FuzzParseRedisURL, FuzzRedisURLPassword)

// hashTag returns the part of key Redis Cluster hashes: the text between
// the first '{' and the first '}' after it when non-empty, else the key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// keySlot is Redis Cluster's CRC16 (XMODEM) of the hash tag, mod 16384.
func keySlot(key string) int {
	var crc uint16
	for _, b := range []byte(hashTag(key)) {
		crc ^= uint16(b) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func TestKeySlotMatchesRedis(t *testing.T) {
	// Values from CLUSTER KEYSLOT on redis-server 7.0.
	for key, want := range map[string]int{"foo": 12182, "{user1000}.following": 3443, "{user1000}.followers": 3443, "foo{}{bar}": 8363, "foo{{bar}}zap": 4015, "foo{bar}{zap}": 5061} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// offlineLimiter builds a Limiter whose client is never used.
func offlineLimiter(t testing.TB, cfg Config) *Limiter {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { rdb.Close() })
	l, err := New(rdb, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// FuzzUserKey: any user id of 1..MaxUserLen bytes gets keys that share one
// hash tag (so one Cluster slot) and differ from every other user's keys;
// anything else is ErrInvalidUser. Nothing panics.
func FuzzUserKey(f *testing.F) {
	for _, s := range [][3]string{
		{"floodgate:", "alice", "bob"},
		{"", "a}b", "a"},
		{"bot1:", "{u:x}", "u:x"},
		{"p", "}", "}:w"},
		{"floodgate:", "x}:cd", "x"},
		{"floodgate:", "\x00\xff", ""},
		{"floodgate:", strings.Repeat("z", MaxUserLen), strings.Repeat("z", MaxUserLen+1)},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, prefix, u1, u2 string) {
		cfg := DefaultConfig()
		cfg.KeyPrefix = prefix
		if cfg.Validate() != nil {
			t.Skip()
		}
		l := offlineLimiter(t, cfg)
		for _, u := range []string{u1, u2} {
			err := validUser(u)
			if bad := u == "" || len(u) > MaxUserLen; bad != (err != nil) || (err != nil && !errors.Is(err, ErrInvalidUser)) {
				t.Fatalf("validUser(%q) = %v", u, err)
			}
		}
		if validUser(u1) != nil {
			return
		}
		w, cd := l.key("u", u1, ":w"), l.key("u", u1, ":cd")
		if w == cd || !strings.HasPrefix(w, l.prefix) || !strings.HasPrefix(cd, l.prefix) {
			t.Fatalf("keys %q and %q of %q", w, cd, u1)
		}
		tag := hashTag(w)
		if tag != hashTag(cd) || !strings.HasPrefix(tag, "u:") || keySlot(w) != keySlot(cd) {
			t.Fatalf("user %q: keys %q and %q have tags %q and %q", u1, w, cd, tag, hashTag(cd))
		}
		if k := l.userKey(u1); k != w && k != cd {
			t.Fatalf("userKey(%q) = %q, neither %q nor %q", u1, k, w, cd)
		}
		if validUser(u2) != nil || u2 == u1 {
			return
		}
		for _, k1 := range []string{w, cd} {
			for _, k2 := range []string{l.key("u", u2, ":w"), l.key("u", u2, ":cd")} {
				if k1 == k2 {
					t.Fatalf("users %q and %q share key %q", u1, u2, k1)
				}
			}
		}
	})
}

// FuzzAllowUser runs Allow on miniredis with arbitrary user bytes: a valid
// id is admitted, then held by the cooldown, under exactly the documented
// key; an invalid one is ErrInvalidUser and reaches no Redis.
func FuzzAllowUser(f *testing.F) {
	for _, u := range []string{"alice", "", "a}b{c", "\x00", "\xff\xfe", "{u:alice}", strings.Repeat("é", MaxUserLen/2), strings.Repeat("x", MaxUserLen+1)} {
		f.Add(u)
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(mr.Close)
	mr.SetTime(epoch)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	f.Cleanup(func() { rdb.Close() })
	l, err := New(rdb, userConfig(10*time.Second, 20, time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, user string) {
		before := len(mr.Keys())
		d, err := l.Allow(ctx, user)
		if user == "" || len(user) > MaxUserLen {
			if !errors.Is(err, ErrInvalidUser) || len(mr.Keys()) != before {
				t.Fatalf("Allow(%q) = %+v, %v; want ErrInvalidUser and no key", user, d, err)
			}
			return
		}
		if err != nil || d != (Decision{Allowed: true, Remaining: 19, ResetAfter: time.Hour}) {
			t.Fatalf("first Allow(%q) = %+v, %v", user, d, err)
		}
		key := "floodgate:{u:" + user + "}:w"
		if strings.ContainsAny(user, "{}") { // tagged by a hash (keys.go)
			key = "floodgate:{u:#" + hashTagOf(user) + "}/" + user + ":w"
		}
		if !mr.Exists(key) {
			t.Fatalf("Allow(%q) did not write %q; keys: %q", user, key, mr.Keys())
		}
		if d, err := l.Allow(ctx, user); err != nil || d != (Decision{Reason: ReasonCooldown, Remaining: 19, RetryAfter: 10 * time.Second, ResetAfter: time.Hour}) {
			t.Fatalf("second Allow(%q) = %+v, %v", user, d, err)
		}
		if err := l.Reset(ctx, user); err != nil || mr.Exists(key) {
			t.Fatalf("Reset(%q): %v, key left: %v", user, err, mr.Exists(key))
		}
	})
}

// FuzzAPIRates: UnmarshalText never panics; what it accepts validates and
// survives String and back.
func FuzzAPIRates(f *testing.F) {
	for _, s := range []string{"wikipedia=1,igdb=4/2", "", " a = 0.5 / 3 ", "a=1,a=2", "a=1/0", "=1", "a=NaN", "a=1e6/1048576", "a=1/2/3", ",", "a=0x1p-2", "é=1", "0=1/7000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r APIRates
		if err := r.UnmarshalText([]byte(s)); err != nil {
			if r != nil {
				t.Fatalf("%q: error %v but value changed to %v", s, err, r)
			}
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("%q accepted as %v, which does not validate: %v", s, r, err)
		}
		cfg := DefaultConfig()
		cfg.APIRates = r
		// Any refill time APIRates accepts (up to 30 days) fits the
		// longest MaxIdleTime; the default hour is checked below.
		cfg.MaxIdleTime = maxPolicyDuration
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%q: Config with %v: %v", s, r, err)
		}
		cfg.MaxIdleTime = DefaultConfig().MaxIdleTime
		if err := cfg.Validate(); err != nil && !strings.Contains(err.Error(), "longer than MaxIdleTime") {
			t.Fatalf("%q: Config with %v and the default MaxIdleTime: %v", s, r, err)
		}
		var back APIRates
		if err := back.UnmarshalText([]byte(r.String())); err != nil {
			// A name with '=', ',' or '/' cannot be written back; the
			// parser never produces one.
			t.Fatalf("%q -> %q: %v", s, r.String(), err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("%q -> %v -> %q -> %v", s, r, r.String(), back)
		}
	})
}

// FuzzParseDuration: never panics; plain numbers are seconds; Go syntax is
// time.ParseDuration's.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"10", "10s", " 1.5 ", "-5", "NaN", "+Inf", "1e300", "1h30m", "", "0x1p4", "9999999999h", "1e-12"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseDuration(s)
		if err != nil {
			if v != nil {
				t.Fatalf("%q: error %v with value %v", s, err, v)
			}
			return
		}
		d, ok := v.(time.Duration)
		if !ok {
			t.Fatalf("%q gave %T", s, v)
		}
		trimmed := strings.TrimSpace(s)
		if fl, err := strconv.ParseFloat(trimmed, 64); err == nil {
			if math.IsNaN(fl) || math.IsInf(fl, 0) {
				t.Fatalf("%q accepted as %v", s, d)
			}
			if want := time.Duration(fl * float64(time.Second)); d != want {
				t.Fatalf("%q = %v, want %v seconds", s, d, fl)
			}
			return
		}
		if want, err := time.ParseDuration(trimmed); err != nil || d != want {
			t.Fatalf("%q = %v, time.ParseDuration says %v, %v", s, d, want, err)
		}
	})
}

// envFields are the variables FuzzConfigFromEnv sets, with the Config field
// each belongs to.
var envFields = []struct{ name, field string }{
	{"FLOODGATE_KEY_PREFIX", "KeyPrefix"},
	{"FLOODGATE_USER_COOLDOWN", "UserCooldown"},
	{"FLOODGATE_MAX_REQUESTS_PER_USER_HOUR", "MaxRequestsPerUserHour"},
	{"FLOODGATE_USER_WINDOW", "UserWindow"},
	{"FLOODGATE_MAX_IDLE_TIME", "MaxIdleTime"},
	{"FLOODGATE_MAX_CONCURRENT_USERS", "MaxConcurrentUsers"},
	{"FLOODGATE_SLOT_LEASE", "SlotLease"},
	{"FLOODGATE_LLM_RETRY_DELAY", "LLMRetryDelay"},
	{"FLOODGATE_LLM_BACKOFF_MULTIPLIER", "LLMBackoffMultiplier"},
	{"FLOODGATE_LLM_BACKOFF_MAX", "LLMBackoffMax"},
	{"FLOODGATE_LLM_BACKOFF_JITTER", "LLMBackoffJitter"},
	{"FLOODGATE_LLM_PROBE_LEASE", "LLMProbeLease"},
	{"FLOODGATE_API_RATES", "APIRates"},
	{"FLOODGATE_REDIS_TIMEOUT", "RedisTimeout"},
	{"FLOODGATE_LOCAL_CACHE_SIZE", "LocalCacheSize"},
	{"FLOODGATE_ON_REDIS_ERROR", "OnRedisError"},
	{"FLOODGATE_SLOTS_ON_REDIS_ERROR", "SlotsOnRedisError"},
}

// FuzzConfigFromEnv sets one variable to any text: the result is a Config
// that validates, or an error that names the variable (or, for a
// cross-field rule, its field).
func FuzzConfigFromEnv(f *testing.F) {
	seeds := map[string]string{
		"FLOODGATE_USER_COOLDOWN": "2h", "FLOODGATE_USER_WINDOW": "1", "FLOODGATE_MAX_REQUESTS_PER_USER_HOUR": "128",
		"FLOODGATE_LLM_BACKOFF_MULTIPLIER": "NaN", "FLOODGATE_API_RATES": "igdb=4/2", "FLOODGATE_ON_REDIS_ERROR": "open",
		"FLOODGATE_KEY_PREFIX": "a{", "FLOODGATE_LLM_RETRY_DELAY": "10m", "FLOODGATE_REDIS_TIMEOUT": "0.0001",
	}
	for i, v := range envFields {
		if s, ok := seeds[v.name]; ok {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		v := envFields[int(which)%len(envFields)]
		cfg, err := configFromEnv(map[string]string{v.name: value})
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, "limiter: ") || (!strings.Contains(msg, v.name) && !strings.Contains(msg, v.field)) {
				t.Fatalf("%s=%q: error %q names neither the variable nor %s", v.name, value, msg, v.field)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s=%q accepted, but the Config does not validate: %v", v.name, value, err)
		}
	})
}

// FuzzParseRedisURL: never panics; an accepted URL gives options a client
// can be built from (TestNewClientKinds builds some): at least one address, each host:port with a real
// port (or a unix socket path), bounded timeouts, database 0 on a Cluster.
// Errors start with "limiter: " and name FLOODGATE_REDIS_URL.
func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{
		"redis://localhost:6379", "rediss://u:p@h:1/2?skip_verify=true", "unix:///run/r.sock?db=1", "h1:1,h2:2,h3:3",
		"redis://h1:1?addr=h2:2", "redis-cluster://h1", "redis+sentinel://:pw@s1,s2/mymaster/3?sentinel_password=x",
		"redis://[::1]", "redis://h:1?dial_timeout=3&read_timeout=2s", "redis://a:b@c@d:1", "redis://h:1/%zz", "", ",",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseRedisURL(s, 250*time.Millisecond)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "limiter: ") || !strings.Contains(msg, "FLOODGATE_REDIS_URL") {
				t.Fatalf("%q: error %q", s, msg)
			}
			return
		}
		if len(o.Addrs) == 0 || !o.ContextTimeoutEnabled || o.ReadTimeout == 0 || o.WriteTimeout == 0 || o.DialTimeout == 0 {
			t.Fatalf("%q: options %+v", s, o)
		}
		for _, a := range o.Addrs {
			if strings.HasPrefix(a, "/") && len(o.Addrs) == 1 && !o.IsClusterMode && o.MasterName == "" {
				continue
			}
			h, p, err := net.SplitHostPort(a)
			n, perr := strconv.Atoi(p)
			if err != nil || h == "" || perr != nil || n < 1 || n > 65535 {
				t.Fatalf("%q: address %q", s, a)
			}
		}
		if o.IsClusterMode && o.DB != 0 {
			t.Fatalf("%q: Cluster with database %d", s, o.DB)
		}
	})
}

// FuzzRedisURLPassword puts a password in a URL whose rest is anything:
// whatever goes wrong, the error never shows the password (as the URL's
// structure defines it: up to the authority's last '@'), raw or
// percent-decoded, when it is at least redisurl.MinScrubLen bytes (shorter ones are
// kept out by construction but cannot be looked for as substrings).
func FuzzRedisURLPassword(f *testing.F) {
	for _, s := range [][3]string{
		{"alice", "Tr0ub4dor", "h:abc"},
		{"", "Tr0ub4dor", "h:1/x"},
		{"alice", "Tr0ub/4dor", "h:1"},
		{"alice", "Tr0ub,4dor", "h1:1,h2:2"},
		{"alice", "Tr0ub%zz4dor", "h:1"},
		{"alice", "Tr0ub%344dor", "h:Tr0ub44dor"},
		{"alice", "database", "h:1/abc"},
		{"alice", "pass", "h:1?bogus=pass"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, user, pass, rest string) {
		if strings.ContainsAny(user, ":@/?#,%") {
			t.Skip() // the password would start elsewhere
		}
		u := "redis://" + user + ":" + pass + "@" + rest
		_, err := ParseRedisURL(u, time.Second)
		if err == nil {
			return
		}
		msg := err.Error()
		if strings.Contains(msg, "URL not shown") || strings.Contains(msg, "details withheld") {
			// Fixed texts: any password found there is an English word.
			return
		}
		// The password as a URL parser sees it: up to the last '@' of the
		// authority, which rest may move.
		first, _, _ := strings.Cut(u, ",")
		auth := first[len("redis://"):]
		if i := strings.IndexAny(auth, "/?#"); i >= 0 {
			auth = auth[:i]
		}
		if at := strings.LastIndex(auth, "@"); at > len(user) {
			pass = auth[len(user)+1 : at]
		}
		secrets := []string{pass}
		if dec, derr := url.PathUnescape(pass); derr == nil {
			secrets = append(secrets, dec)
		}
		for _, sec := range secrets {
			// The user name is shown on purpose (quoted); a password it
			// contains shows with it.
			if len(sec) >= redisurl.MinScrubLen && strings.Contains(msg, sec) && !strings.Contains(strconv.Quote(user), sec) {
				t.Fatalf("password %q shows in %q", sec, msg)
			}
		}
	})
}
