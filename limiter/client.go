package limiter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisurl"
)

// Building a Redis client from Config.RedisURL. The URL forms are those of
// go-redis (redis.ParseURL, ParseClusterURL, ParseFailoverURL), plus the
// multi-host forms operators write in one environment variable:
//
//	redis://[user:password@]host[:port][/db][?option=value&...]
//	rediss://...                            the same over TLS
//	unix://[user:password@]/path/redis.sock[?db=N]
//	host:port                               a single node, no scheme
//	redis://h1:p1,redis://h2:p2,...         Redis Cluster seed nodes
//	h1:p1,h2:p2,...                         the same without schemes
//	redis://h1:p1?addr=h2:p2&addr=h3:p3     Cluster, go-redis's own form
//	redis-cluster://host:port[,host:port]   Cluster, even from one seed
//	                                        (e.g. a cloud configuration endpoint)
//	redis-sentinel://[user:password@]h1:p1[,h2:p2]/master[/db][?...]
//	                                        Sentinel: the hosts are sentinels
//	                                        (port 26379 by default), the
//	                                        credentials are the master's
//
// "+" may replace "-" in the scheme (redis+sentinel://, as redis-py writes
// it) and "rediss" in any of them means TLS. Options are go-redis's query
// parameters (dial_timeout, pool_size, max_retries, protocol, ...), plus
// skip_verify=true (TLS without certificate checks, for tests only) for
// every form and sentinel_username / sentinel_password for Sentinel.
// Special characters in a password (@ : / ? # , % and space) must be
// percent-encoded, as in any URL.

// redisURLVar names the variable in errors; REDIS_URL is its fallback.
const redisURLVar = EnvPrefix + "REDIS_URL"

// redacted replaces secrets in URLs shown in errors.
const redacted = redisurl.Redacted

// minScrubLen is the shortest secret that errors are also scrubbed of,
// character for character. Shorter ones would match inside ordinary words;
// they are kept out of messages by construction (a message never quotes
// the credentials part of a URL).
const minScrubLen = 4

// RedactURL returns a Redis URL (any form ParseRedisURL reads, or text
// that only looks like one) fit for logs and reports: every password,
// in the userinfo or in a query parameter whose name marks a secret
// (password, sentinel_password, token, ...), is replaced by "xxxxx"; the
// user name, hosts and other options stay. It hides more rather than
// less where a password's unencoded special characters (space, '{', '@',
// '/', ',' ...) make the URL's structure ambiguous, and never returns a
// URL whole because it does not parse. Every Floodgate command shows URLs
// through it.
func RedactURL(raw string) string { return redisurl.Redact(raw) }

// ClientOption adjusts NewClient.
type ClientOption func(*clientOptions)

type clientOptions struct {
	tls    *tls.Config
	tweaks []func(*redis.UniversalOptions)
}

// WithTLSConfig makes NewClient use tlsConfig (cloned) for a rediss://
// URL, e.g. to trust a private CA or present a client certificate. Each
// node's certificate is checked against the host it is dialled by, unless
// tlsConfig sets ServerName. Given with a URL that is not rediss://, it is
// an error rather than a silent plain-text connection.
func WithTLSConfig(tlsConfig *tls.Config) ClientOption {
	return func(o *clientOptions) { o.tls = tlsConfig }
}

// WithRedisOptions lets fn adjust the go-redis options after the URL and
// Config are applied (pool sizes, hooks, credentials providers...).
func WithRedisOptions(fn func(*redis.UniversalOptions)) ClientOption {
	return func(o *clientOptions) { o.tweaks = append(o.tweaks, fn) }
}

// NewClient returns a go-redis client for cfg.RedisURL (see ParseRedisURL
// for the forms): a *redis.Client for one node or Sentinel, a
// *redis.ClusterClient for a Cluster. Every call it makes honours its
// context's deadline, and reads and writes time out after
// cfg.RedisTimeout. A Cluster client re-reads the slot map as soon as a
// node cannot be reached (and every 10 s), so a replica promoted after a
// master's crash serves decisions within moments of its election rather
// than after go-redis's one-minute reload. Like go-redis, NewClient does
// not contact Redis: a wrong address or password shows on the first call
// (the error never contains the password).
func NewClient(cfg Config, opts ...ClientOption) (redis.UniversalClient, error) {
	var co clientOptions
	for _, o := range opts {
		if o != nil {
			o(&co)
		}
	}
	uo, err := ParseRedisURL(cfg.RedisURL, cfg.RedisTimeout)
	if err != nil {
		return nil, err
	}
	if co.tls != nil {
		if uo.TLSConfig == nil {
			return nil, fmt.Errorf("limiter: %s: WithTLSConfig was given but the URL does not ask for TLS (use rediss://)", redisURLVar)
		}
		skip := uo.TLSConfig.InsecureSkipVerify
		uo.TLSConfig = co.tls.Clone()
		if skip {
			uo.TLSConfig.InsecureSkipVerify = true
		}
	}
	for _, fn := range co.tweaks {
		fn(uo)
	}
	if uo.IsClusterMode && uo.MasterName == "" {
		return newClusterClient(uo), nil
	}
	return redis.NewUniversalClient(uo), nil
}

// clusterStateReload is how often a Cluster client re-reads the slot map
// even when nothing fails (go-redis: 60 s).
const clusterStateReload = 10 * time.Second

// newClusterClient builds a Cluster client that re-reads the slot map as
// soon as a node cannot be reached. go-redis re-reads it on MOVED and
// READONLY only: after a master crashes, its slots' calls keep dialling
// the dead address until the periodic reload, up to a minute, although a
// replica took over seconds earlier.
func newClusterClient(uo *redis.UniversalOptions) *redis.ClusterClient {
	co := uo.Cluster()
	co.ClusterStateReloadInterval = clusterStateReload
	cc := redis.NewClusterClient(co)
	cc.AddHook(reloadOnOutage{cc})
	return cc
}

// reloadOnOutage asks for a slot-map reload after a call that failed for
// want of a node (IsUnavailable). go-redis runs at most one reload at a
// time and then pauses 200 ms, so an outage costs a few CLUSTER SLOTS
// per second, not one per call.
type reloadOnOutage struct{ cc *redis.ClusterClient }

func (h reloadOnOutage) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnOutage) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && IsUnavailable(err) {
			h.cc.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadOnOutage) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil && IsUnavailable(err) {
			h.cc.ReloadState(ctx)
		}
		return err
	}
}

// ParseRedisURL turns a Redis URL (the forms listed in this file's
// comment: one node, Cluster, Sentinel, with or without TLS) into go-redis
// options. A Cluster form sets IsClusterMode and a Sentinel form
// MasterName, so redis.NewUniversalClient builds the right client.
//
// timeout (Config.RedisTimeout) becomes the read and write timeout (a
// read_timeout given in the URL also sets the write timeout, as in
// go-redis); the
// dial timeout is twice that, at least 1 s, since a connection (TCP, TLS,
// AUTH) is set up once per pooled connection and a short dial timeout
// under load turns into a reconnection storm. Calls are bounded by their
// context anyway (ContextTimeoutEnabled is set). A failed call is retried
// once, and a connection is dialled at most twice. Options given in the
// URL win over these defaults.
//
// An empty url is an error naming FLOODGATE_REDIS_URL and REDIS_URL. Errors
// name FLOODGATE_REDIS_URL, show the URL with its password replaced by
// "xxxxx", and never contain the password.
func ParseRedisURL(rawURL string, timeout time.Duration) (*redis.UniversalOptions, error) {
	s := strings.TrimSpace(rawURL)
	if s == "" {
		return nil, fmt.Errorf("limiter: no Redis address: set %s (or REDIS_URL), e.g. redis://localhost:6379", redisURLVar)
	}
	if timeout <= 0 || timeout > maxRedisTimeout {
		return nil, fieldError("RedisTimeout", "must be between %v and %v, got %v", time.Millisecond, maxRedisTimeout, timeout)
	}
	p := &urlParser{}
	o, err := p.parse(s)
	if err != nil {
		return nil, p.error(s, err)
	}
	applyTimeouts(o, timeout)
	return o, nil
}

// applyTimeouts sets Floodgate's bounds where the URL left go-redis's
// defaults (seconds, made for caches that can afford to wait).
func applyTimeouts(o *redis.UniversalOptions, timeout time.Duration) {
	o.ContextTimeoutEnabled = true
	if o.ReadTimeout == 0 {
		o.ReadTimeout = timeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = o.ReadTimeout // as go-redis does
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = max(2*timeout, time.Second)
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
	if o.MaxRetryBackoff == 0 {
		o.MaxRetryBackoff = max(timeout/2, time.Millisecond)
	}
	if o.DialerRetries == 0 {
		// Attempts in all. go-redis makes 5, 100 ms apart: half a second
		// spent on a node that is down, past a decision's budget.
		o.DialerRetries = 2
	}
}

// urlParser parses one RedisURL and remembers its secrets, so that error
// can scrub them.
type urlParser struct {
	secrets []string
}

// errNoDetails is a parse error whose details could reveal a password.
type errNoDetails struct{ why string }

func (e errNoDetails) Error() string { return e.why }

// error formats a parse failure: the variable, the redacted URL, the
// reason; then makes sure no secret survived.
func (p *urlParser) error(s string, err error) error {
	var nd errNoDetails
	if errors.As(err, &nd) {
		return fmt.Errorf("limiter: %s: %s (URL not shown: it may hold a password)", redisURLVar, nd.why)
	}
	msg := fmt.Sprintf("limiter: %s %q: %v", redisURLVar, RedactURL(s), err)
	for _, sec := range p.secrets {
		if len(sec) >= minScrubLen {
			msg = strings.ReplaceAll(msg, sec, redacted)
		}
	}
	for _, sec := range p.secrets {
		if len(sec) >= minScrubLen && strings.Contains(msg, sec) {
			return fmt.Errorf("limiter: %s is invalid (details withheld: they would show the password)", redisURLVar)
		}
	}
	return errors.New(msg)
}

// The schemes of the multi-host forms.
var (
	clusterSchemes  = map[string]bool{"redis-cluster": false, "redis+cluster": false, "rediss-cluster": true, "rediss+cluster": true}
	sentinelSchemes = map[string]bool{"redis-sentinel": false, "redis+sentinel": false, "rediss-sentinel": true, "rediss+sentinel": true}
)

func (p *urlParser) parse(s string) (*redis.UniversalOptions, error) {
	if err := preScan(s); err != nil {
		return nil, err
	}
	scheme, body := splitScheme(s)
	if tlsOn, ok := sentinelSchemes[scheme]; ok {
		u, err := p.entry(scheme, body, true)
		if err != nil {
			return nil, err
		}
		return p.sentinel(u, tlsOn)
	}
	if tlsOn, ok := clusterSchemes[scheme]; ok {
		u, err := p.entry(scheme, body, true)
		if err != nil {
			return nil, err
		}
		return p.cluster([]*urlEntry{u}, tlsOn)
	}
	parts := strings.Split(s, ",")
	entries := make([]*urlEntry, len(parts))
	for i, part := range parts {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("entry %d of the comma-separated list is empty", i+1)
		}
		sc, b := splitScheme(part)
		if _, ok := clusterSchemes[sc]; ok && len(parts) > 1 {
			return nil, fmt.Errorf("list the nodes of %s:// in one URL: %s://h1:p1,h2:p2", sc, sc)
		}
		if _, ok := sentinelSchemes[sc]; ok {
			return nil, fmt.Errorf("list the sentinels of %s:// in one URL: %s://h1:p1,h2:p2/master", sc, sc)
		}
		e, err := p.entry(sc, b, false)
		if err != nil {
			return nil, err
		}
		entries[i] = e
	}
	if len(entries) == 1 {
		e := entries[0]
		if e.query.Has("addr") {
			return p.cluster(entries, e.scheme == "rediss")
		}
		return p.single(e)
	}
	schemes := map[string]bool{}
	for _, e := range entries {
		if e.scheme == "unix" {
			return nil, errors.New("a unix:// socket cannot be part of a Cluster list")
		}
		if e.scheme != "" {
			schemes[e.scheme] = true
		}
	}
	if len(schemes) > 1 {
		return nil, errors.New("the Cluster nodes mix redis:// and rediss://")
	}
	return p.cluster(entries, schemes["rediss"])
}

// preScan rejects, before anything is parsed or quoted, the inputs where a
// password's special characters broke the URL's structure: parsing them
// further could quote a piece of the password.
func preScan(s string) error {
	for _, part := range strings.Split(s, ",") {
		scheme, body := splitScheme(part)
		end := strings.IndexAny(body, "/?#")
		if end < 0 {
			end = len(body)
		}
		if strings.Contains(body[end:], "@") {
			return errNoDetails{"'@' after the host: percent-encode '/', '?', '#', ',' and '@' in a password (%2F, %3F, %23, %2C, %40)"}
		}
		if scheme == "" && strings.Contains(body, "@") {
			return errNoDetails{"credentials need a scheme: redis://user:password@host:port (and ',' in a password must be written %2C)"}
		}
	}
	return nil
}

// splitScheme splits "scheme://body"; a string without a scheme (host:port)
// gives "".
func splitScheme(s string) (scheme, body string) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", s
	}
	for _, r := range s[:i] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return "", s
		}
	}
	return strings.ToLower(s[:i]), s[i+3:]
}

// urlEntry is one URL with its credentials taken out, so that nothing
// parsed or quoted later can contain them.
type urlEntry struct {
	scheme     string
	user, pass string
	hasCreds   bool
	hosts      []string // host:port, checked; empty for unix
	path       string   // decoded, without the leading '/'
	query      url.Values
	rawQuery   string
}

// entry parses "[user:password@]host[:port][,host:port...][/path][?query]".
// multiHost allows a comma-separated host list (Cluster and Sentinel
// schemes).
func (p *urlParser) entry(scheme, body string, multiHost bool) (*urlEntry, error) {
	e := &urlEntry{scheme: scheme}
	switch scheme {
	case "", "redis", "rediss", "unix":
	default:
		if _, ok := clusterSchemes[scheme]; !ok {
			if _, ok := sentinelSchemes[scheme]; !ok {
				return nil, fmt.Errorf("unknown scheme %q: want redis://, rediss://, unix://, redis-cluster:// or redis-sentinel://", scheme)
			}
		}
	}
	end := strings.IndexAny(body, "/?#")
	if end < 0 {
		end = len(body)
	}
	authority, tail := body[:end], body[end:]
	if multiHost && strings.HasSuffix(authority, ":") && strings.HasPrefix(tail, "//") {
		return nil, fmt.Errorf("write the scheme once: %s://h1:p1,h2:p2", scheme)
	}
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		if err := p.creds(e, authority[:i]); err != nil {
			return nil, err
		}
		authority = authority[i+1:]
	}
	if strings.Contains(tail, "#") {
		return nil, errors.New("a '#fragment' has no meaning here (percent-encode '#' as %23)")
	}
	pathPart, rawQuery, _ := strings.Cut(tail, "?")
	path, err := url.PathUnescape(strings.TrimPrefix(pathPart, "/"))
	if err != nil {
		return nil, fmt.Errorf("the path is not percent-encoded correctly")
	}
	e.path = path
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, errNoDetails{"the ?options are not a valid query string (percent-encode special characters)"}
	}
	for _, k := range []string{"password", "sentinel_password"} {
		for _, v := range q[k] {
			p.secrets = append(p.secrets, v, url.QueryEscape(v))
		}
	}
	e.query, e.rawQuery = q, rawQuery

	if scheme == "unix" {
		if authority != "" {
			return nil, errors.New("unix:// takes a path, e.g. unix:///run/redis.sock")
		}
		if e.path == "" {
			return nil, errors.New("unix:// needs a socket path, e.g. unix:///run/redis.sock")
		}
		e.path = "/" + e.path
		return e, nil
	}
	hosts := []string{authority}
	if multiHost {
		hosts = strings.Split(authority, ",")
	}
	defPort := "6379"
	if _, ok := sentinelSchemes[scheme]; ok {
		defPort = "26379"
	}
	for _, h := range hosts {
		hp, err := hostPort(strings.TrimSpace(h), defPort)
		if err != nil {
			return nil, err
		}
		e.hosts = append(e.hosts, hp)
	}
	return e, nil
}

// creds takes "user:password" (percent-encoded) out of an entry.
func (p *urlParser) creds(e *urlEntry, userinfo string) error {
	rawUser, rawPass, hasPass := strings.Cut(userinfo, ":")
	// Register the raw text first: even a malformed one must not be shown.
	if hasPass {
		p.secrets = append(p.secrets, rawPass)
	} else {
		p.secrets = append(p.secrets, rawUser)
	}
	user, err1 := url.PathUnescape(rawUser)
	pass, err2 := url.PathUnescape(rawPass)
	if err1 != nil || err2 != nil {
		return errNoDetails{"the user name or password is not percent-encoded correctly ('%' must be written %25)"}
	}
	if !hasPass {
		p.secrets = append(p.secrets, user)
		return errNoDetails{"a user name without a password: write redis://user:password@host, or redis://:password@host for a password alone"}
	}
	p.secrets = append(p.secrets, pass)
	e.user, e.pass, e.hasCreds = user, pass, true
	return nil
}

// hostPort checks "host[:port]" and adds the default port.
func hostPort(h, defPort string) (string, error) {
	if h == "" {
		return "", errors.New("a host is missing")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: "redis", "10.0.0.1" or "[::1]".
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), defPort
		if strings.Contains(host, ":") && !strings.HasPrefix(h, "[") {
			return "", fmt.Errorf("%q is not host:port (write IPv6 addresses in brackets: [::1]:6379)", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", h)
	}
	if strings.ContainsAny(host, " \t\r\n[]{}<>\"'\\^`|%@,/?#") || strings.ContainsFunc(host, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("host %q has characters a host name cannot have", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// takeSkipVerify removes skip_verify from q: go-redis's cluster parser
// does not know it, so it is applied here for every form.
func takeSkipVerify(q url.Values, tlsOn bool) (bool, error) {
	if !q.Has("skip_verify") {
		return false, nil
	}
	v := q.Get("skip_verify")
	q.Del("skip_verify")
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("skip_verify=%q is not true or false", v)
	}
	if b && !tlsOn {
		return false, errors.New("skip_verify applies to TLS: use rediss://")
	}
	return b, nil
}

// tlsConfig is the client TLS setup of a rediss URL. ServerName stays
// empty so that each node is checked against the name it is dialled by
// (go-redis would check every Cluster node against the first one's).
func tlsConfig(on, skipVerify bool) *tls.Config {
	if !on {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify}
}

// single parses one redis://, rediss://, unix:// URL or host:port.
func (p *urlParser) single(e *urlEntry) (*redis.UniversalOptions, error) {
	scheme := e.scheme
	if scheme == "" {
		scheme = "redis"
	}
	skip, err := takeSkipVerify(e.query, scheme == "rediss")
	if err != nil {
		return nil, err
	}
	var canon string
	if scheme == "unix" {
		canon = "unix://" + (&url.URL{Path: e.path}).EscapedPath()
	} else {
		canon = scheme + "://" + e.hosts[0]
		if e.path != "" {
			canon += "/" + url.PathEscape(e.path)
		}
	}
	if len(e.query) > 0 {
		canon += "?" + e.query.Encode()
	}
	ro, err := redis.ParseURL(canon)
	if err != nil {
		return nil, err
	}
	o := &redis.UniversalOptions{Addrs: []string{ro.Addr}}
	copyOptions(o, ro)
	o.Username, o.Password = e.user, e.pass
	o.TLSConfig = tlsConfig(scheme == "rediss", skip)
	return o, nil
}

// cluster parses Cluster seed nodes: one URL per node, or one URL with a
// host list or go-redis's addr= parameters.
func (p *urlParser) cluster(entries []*urlEntry, tlsOn bool) (*redis.UniversalOptions, error) {
	var creds *urlEntry
	var query url.Values
	rawQuery := ""
	var hosts []string
	for _, e := range entries {
		if e.hasCreds {
			if creds != nil && (creds.user != e.user || creds.pass != e.pass) {
				return nil, errNoDetails{"the Cluster nodes carry different credentials; give them once"}
			}
			creds = e
		}
		if e.path != "" && e.path != "0" {
			return nil, fmt.Errorf("a Redis Cluster has only database 0, got path %q", "/"+e.path)
		}
		if e.rawQuery != "" {
			if query != nil && e.rawQuery != rawQuery {
				return nil, errors.New("give the ?options once, on one node")
			}
			query, rawQuery = e.query, e.rawQuery
		}
		hosts = append(hosts, e.hosts...)
	}
	if query == nil {
		query = url.Values{}
	}
	skip, err := takeSkipVerify(query, tlsOn)
	if err != nil {
		return nil, err
	}
	if query.Has("db") {
		return nil, errors.New("a Redis Cluster has only database 0: drop db=")
	}
	// go-redis's own form names further nodes with addr=.
	for _, a := range query["addr"] {
		hp, err := hostPort(strings.TrimSpace(a), "6379")
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, hp)
	}
	query.Del("addr")
	// go-redis's ParseClusterURL reads the first node from the URL and the
	// others from addr=.
	for _, h := range hosts[1:] {
		query.Add("addr", h)
	}
	canon := "redis://" + hosts[0]
	if len(query) > 0 {
		canon += "?" + query.Encode()
	}
	co, err := redis.ParseClusterURL(canon)
	if err != nil {
		return nil, err
	}
	o := &redis.UniversalOptions{Addrs: co.Addrs, IsClusterMode: true}
	copyOptions(o, co)
	if creds != nil {
		o.Username, o.Password = creds.user, creds.pass
	}
	o.TLSConfig = tlsConfig(tlsOn, skip)
	return o, nil
}

// sentinel parses redis-sentinel://[user:pass@]s1:p1,s2:p2/master[/db].
func (p *urlParser) sentinel(e *urlEntry, tlsOn bool) (*redis.UniversalOptions, error) {
	q := e.query
	skip, err := takeSkipVerify(q, tlsOn)
	if err != nil {
		return nil, err
	}
	master, db, _ := strings.Cut(e.path, "/")
	if q.Has("master_name") {
		if master != "" {
			return nil, errors.New("the master name is given both as the path and as master_name=")
		}
		master = q.Get("master_name")
		q.Del("master_name")
	}
	if master == "" {
		return nil, fmt.Errorf("%s:// needs the master's name as its path: %s://host:26379/mymaster", e.scheme, e.scheme)
	}
	if strings.Contains(db, "/") {
		return nil, fmt.Errorf("the path is /master[/db], got %q", "/"+e.path)
	}
	sentUser, sentPass := q.Get("sentinel_username"), q.Get("sentinel_password")
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	q.Set("master_name", master)
	for _, h := range e.hosts[1:] {
		q.Add("addr", h)
	}
	canon := "redis://" + e.hosts[0]
	if db != "" {
		canon += "/" + url.PathEscape(db)
	}
	canon += "?" + q.Encode()
	fo, err := redis.ParseFailoverURL(canon)
	if err != nil {
		return nil, err
	}
	o := &redis.UniversalOptions{Addrs: fo.SentinelAddrs, MasterName: fo.MasterName, ReadOnly: fo.ReplicaOnly}
	copyOptions(o, fo)
	if e.hasCreds {
		o.Username, o.Password = e.user, e.pass
	}
	o.SentinelUsername, o.SentinelPassword = sentUser, sentPass
	o.TLSConfig = tlsConfig(tlsOn, skip)
	return o, nil
}

// copyOptions copies every exported field of src (a go-redis Options,
// ClusterOptions or FailoverOptions) that UniversalOptions has with the
// same name and type: all that go-redis's URL parsers can set, including
// fields added by later go-redis versions.
func copyOptions(dst *redis.UniversalOptions, src any) {
	sv := reflect.ValueOf(src).Elem()
	dv := reflect.ValueOf(dst).Elem()
	for i := 0; i < sv.NumField(); i++ {
		sf := sv.Type().Field(i)
		if !sf.IsExported() || sf.Name == "Addrs" || sf.Name == "TLSConfig" {
			continue
		}
		df := dv.FieldByName(sf.Name)
		if !df.IsValid() || !df.CanSet() || df.Type() != sf.Type {
			continue
		}
		if !sv.Field(i).IsZero() {
			df.Set(sv.Field(i))
		}
	}
}
