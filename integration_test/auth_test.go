package integration_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/scripts/lua"
)

// Passwords of the test servers. They are long enough to be scrubbed from
// errors character for character, and tests check that they never show.
const (
	adminPassword = "Adm1n-S3cret-pw"
	botPassword   = "Fl00dg4te-S3cret-pw"
)

// documentedACL is the ACL SETUSER rule docs/reliability.md recommends
// (Passwords and ACL users), read from the docs so that the tests run what
// operators are told to run: its commands (without "+") and the rule's
// other words (reset, on, key pattern...).
func documentedACL(t testing.TB) (commands, rest []string) {
	t.Helper()
	doc, err := os.ReadFile("../docs/reliability.md")
	if err != nil {
		t.Fatal(err)
	}
	m := documentedACLRule.FindStringSubmatch(string(doc))
	if m == nil {
		t.Fatal("docs/reliability.md has no ```-fenced ACL SETUSER floodgate rule")
	}
	for _, w := range strings.Fields(m[1]) {
		switch {
		case strings.HasPrefix(w, "+"):
			commands = append(commands, strings.ToLower(w[1:]))
		case strings.HasPrefix(w, ">"):
			// the password placeholder
		default:
			rest = append(rest, w)
		}
	}
	if len(commands) < 5 {
		t.Fatalf("the documented ACL grants only %v: is the parser broken?", commands)
	}
	return commands, rest
}

var documentedACLRule = regexp.MustCompile("(?s)```[ \t]*\n[ \t]*ACL SETUSER floodgate (.*?)```")

// floodgateACL is the documented ACL SETUSER rule for user with password,
// minus the commands in without.
func floodgateACL(t testing.TB, user, password string, without ...string) []any {
	t.Helper()
	commands, rest := documentedACL(t)
	args := []any{"acl", "setuser", user}
	for _, w := range rest {
		args = append(args, w)
	}
	args = append(args, ">"+password)
	for _, c := range commands {
		if !slices.Contains(without, c) {
			args = append(args, "+"+c)
		}
	}
	return args
}

var scriptCall = regexp.MustCompile(`redis\.p?call\(\s*['"]([A-Za-z]+)['"]`)

// TestACLCoversScripts: every command a Lua script calls is granted by the
// ACL docs/reliability.md recommends (TestACLUser runs every policy as a
// user with exactly that ACL).
func TestACLCoversScripts(t *testing.T) {
	commands, rest := documentedACL(t)
	allowed := map[string]bool{}
	for _, c := range commands {
		allowed[c] = true
	}
	if !slices.Contains(rest, "-@all") || !slices.Contains(rest, "~floodgate:*") {
		t.Errorf("the documented ACL %v is not least privilege (-@all, ~floodgate:*)", rest)
	}
	used := map[string][]string{}
	for _, name := range lua.Names() {
		for _, m := range scriptCall.FindAllStringSubmatch(lua.Source(name), -1) {
			c := strings.ToLower(m[1])
			used[c] = append(used[c], name)
		}
	}
	if len(used) < 5 {
		t.Fatalf("found only %v in the scripts: is the pattern broken?", used)
	}
	var missing []string
	for c, files := range used {
		if !allowed[c] {
			missing = append(missing, c+" (in "+strings.Join(files, ", ")+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("scripts call commands the ACL in docs/reliability.md does not allow: %v; add them there", missing)
	}
}

// startAuthServer starts a redis-server whose default user needs
// adminPassword, with the user "floodgate" (the recommended ACL) and
// "floodgate-notime" (the same without TIME). It returns the address and
// an admin client.
func startAuthServer(t *testing.T) (string, *redis.Client) {
	t.Helper()
	ctx := context.Background()
	srv := startRedis(t, "--requirepass", adminPassword)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: adminPassword})
	t.Cleanup(func() { admin.Close() })
	for _, rule := range [][]any{floodgateACL(t, "floodgate", botPassword), floodgateACL(t, "floodgate-notime", botPassword, "time")} {
		if err := admin.Do(ctx, rule...).Err(); err != nil {
			t.Fatalf("%v: %v", rule[:3], err)
		}
	}
	return srv.Addr, admin
}

// authLimiter builds a Limiter through NewClient from url.
func authLimiter(t *testing.T, url string) *limiter.Limiter {
	t.Helper()
	cfg := limiter.DefaultConfig()
	cfg.RedisURL = url
	cfg.RedisTimeout = 2 * time.Second
	return urlLimiter(t, cfg)
}

// shared fails unless d was decided by Redis.
func shared(t *testing.T, what string, d limiter.Decision, err error) limiter.Decision {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if d.Degraded {
		t.Fatalf("%s: degraded decision %+v", what, d)
	}
	return d
}

// TestRequirePass: the password in the URL opens the server; a wrong or
// missing one gives an error that says so without showing it.
func TestRequirePass(t *testing.T) {
	addr, _ := startAuthServer(t)
	ctx := context.Background()

	l := authLimiter(t, "redis://:"+adminPassword+"@"+addr)
	if d, err := l.Allow(ctx, "alice"); !shared(t, "Allow", d, err).Allowed {
		t.Fatalf("Allow = %+v", d)
	}
	for _, tc := range []struct{ url, want string }{
		{"redis://:Wr0ng-S3cret-pw@" + addr, "WRONGPASS"},
		{"redis://default:Wr0ng-S3cret-pw@" + addr, "WRONGPASS"},
		{"redis://" + addr, "NOAUTH"},
	} {
		lb := authLimiter(t, tc.url)
		_, err := lb.Allow(ctx, "alice")
		if err == nil {
			t.Fatalf("%s: Allow succeeded", tc.url)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, "Wr0ng-S3cret-pw") || strings.Contains(msg, adminPassword) {
			t.Fatalf("%s: error %q; want %s and no password", tc.url, msg, tc.want)
		}
		if limiter.IsUnavailable(err) {
			t.Fatalf("%s: %q counts as Redis unavailable: a misconfigured password would silently fall back to local limits", tc.url, msg)
		}
	}
}

// TestACLUser runs every policy (Allow, AllowMany, Reset, Import, Bucket,
// Slots, Backoff) as an ACL user limited to "floodgate:*" and the
// recommended commands, including the reload of a flushed
// script; shows that the ACL binds (other keys, other commands, a script
// calling TIME without +time are refused); and that a wrong password
// never shows in errors.
func TestACLUser(t *testing.T) {
	addr, admin := startAuthServer(t)
	ctx := context.Background()
	l := authLimiter(t, "redis://floodgate:"+botPassword+"@"+addr)

	exercise := func(round string) {
		t.Helper()
		if d, err := l.Allow(ctx, round+"-alice"); !shared(t, round+" Allow", d, err).Allowed {
			t.Fatalf("%s: Allow = %+v", round, d)
		}
		ds, err := l.AllowMany(ctx, []string{round + "-bob", round + "-carol", round + "-alice"})
		if err != nil || len(ds) != 3 || !ds[0].Allowed || !ds[1].Allowed || ds[2].Allowed {
			t.Fatalf("%s: AllowMany = %+v, %v; want bob and carol in, alice held by the cooldown", round, ds, err)
		}
		for _, d := range ds {
			if d.Degraded {
				t.Fatalf("%s: AllowMany degraded: %+v", round, ds)
			}
		}
		if err := l.Reset(ctx, round+"-alice"); err != nil {
			t.Fatalf("%s: Reset: %v", round, err)
		}
		if err := l.Import(ctx, round+"-dave", []time.Time{time.Now().Add(-time.Minute)}); err != nil {
			t.Fatalf("%s: Import: %v", round, err)
		}
		d, err := mustBucket(t, l, round+"-api", 10, 2).Allow(ctx)
		shared(t, round+" Bucket.Allow", d, err)
		slots := mustSlots(t, l, round+"-llm", 2, 10*time.Second)
		lease, err := slots.TryAcquire(ctx, "bot-1")
		if err != nil || lease == nil {
			t.Fatalf("%s: TryAcquire = %v, %v", round, lease, err)
		}
		if err := lease.Refresh(ctx); err != nil {
			t.Fatalf("%s: Refresh: %v", round, err)
		}
		if n, err := slots.InUse(ctx); err != nil || n != 1 {
			t.Fatalf("%s: InUse = %d, %v", round, n, err)
		}
		if _, err := slots.Waiting(ctx); err != nil {
			t.Fatalf("%s: Waiting: %v", round, err)
		}
		if err := lease.Release(ctx); err != nil {
			t.Fatalf("%s: Release: %v", round, err)
		}
		b, err := l.Backoff(round+"-llm", limiter.BackoffSettings{})
		if err != nil {
			t.Fatalf("%s: Backoff: %v", round, err)
		}
		if d, err := b.Check(ctx, "gpt"); !shared(t, round+" Backoff.Check", d, err).Allowed {
			t.Fatalf("%s: Check = %+v", round, d)
		}
		if d, err := b.Failure(ctx, "gpt"); shared(t, round+" Backoff.Failure", d, err).Allowed {
			t.Fatalf("%s: Failure = %+v, want the endpoint open", round, d)
		}
		if _, err := b.Status(ctx, "gpt"); err != nil {
			t.Fatalf("%s: Status: %v", round, err)
		}
		if err := b.Success(ctx, "gpt"); err != nil {
			t.Fatalf("%s: Success: %v", round, err)
		}
		if st, err := b.Status(ctx, "gpt"); err != nil || st.State != limiter.StateClosed {
			t.Fatalf("%s: after Success: %+v, %v; want closed (Success's DEL refused?)", round, st, err)
		}
	}
	exercise("first")
	// A restart or failover empties the script cache: EVAL and SCRIPT LOAD.
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	exercise("flushed")

	// The ACL binds.
	bot, err := limiter.NewClient(l.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer bot.Close()
	// (The commands the scripts call are granted outright: an ACL cannot
	// grant a command inside scripts only.)
	if err := bot.Incr(ctx, "floodgate:free").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("INCR as the floodgate user: %v, want NOPERM (INCR is not granted)", err)
	}
	if err := bot.ConfigGet(ctx, "*").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("CONFIG GET: %v, want NOPERM", err)
	}
	if err := bot.Del(ctx, "other:key").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("DEL other:key: %v, want NOPERM (outside floodgate:*)", err)
	}
	if err := bot.FlushAll(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("FLUSHALL: %v, want NOPERM", err)
	}
	cfg := l.Config()
	cfg.KeyPrefix = "elsewhere:"
	other, err := limiter.New(bot, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Allow(ctx, "alice")
	if err == nil || !strings.Contains(err.Error(), "NOPERM") || limiter.IsUnavailable(err) {
		t.Fatalf("Allow outside the key pattern: %v, want a NOPERM error (not an outage)", err)
	}
	notime := authLimiter(t, "redis://floodgate-notime:"+botPassword+"@"+addr)
	if _, err := notime.Allow(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "can't run this command") || limiter.IsUnavailable(err) {
		t.Fatalf("Allow without +time: %v, want the script's TIME call refused, as an error (not an outage)", err)
	}

	// A wrong password: a clear error without it.
	wrong := authLimiter(t, "redis://floodgate:Wr0ng-S3cret-pw@"+addr)
	_, err = wrong.Allow(ctx, "alice")
	var rerr redis.Error
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), "Wr0ng-S3cret-pw") || !errors.As(err, &rerr) {
		t.Fatalf("wrong password: %v, want a wrapped WRONGPASS without the password", err)
	}
}
