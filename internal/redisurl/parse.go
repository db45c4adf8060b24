// Package redisurl reads the Redis URLs Floodgate accepts (one node,
// Cluster, Sentinel; with or without TLS) into go-redis options, and
// redacts their secrets for display. The limiter package's NewClient,
// ParseRedisURL and RedactURL are its public face.
package redisurl

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// MinScrubLen is the shortest secret that Parse's errors are also scrubbed
// of, character for character. Shorter ones would match inside ordinary
// words; they are kept out of messages by construction (a message never
// quotes the credentials part of a URL).
const MinScrubLen = 4

// Parse turns a Redis URL (one node, Cluster, Sentinel; with or without
// TLS: the forms limiter.ParseRedisURL documents) into go-redis options.
// A Cluster form sets IsClusterMode and a Sentinel form MasterName, so
// redis.NewUniversalClient builds the right client. Timeouts are left as
// the URL gives them (zero when it gives none).
//
// Errors start with name (the variable the URL came from), show the URL
// through Redact, and never contain a password: where a password's
// special characters broke the URL's structure, the URL is not shown.
func Parse(name, rawURL string) (*redis.UniversalOptions, error) {
	s := strings.TrimSpace(rawURL)
	p := &urlParser{}
	o, err := p.parse(s)
	if err != nil {
		return nil, p.error(name, s, err)
	}
	return o, nil
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
func (p *urlParser) error(name, s string, err error) error {
	var nd errNoDetails
	if errors.As(err, &nd) {
		return fmt.Errorf("%s: %s (URL not shown: it may hold a password)", name, nd.why)
	}
	msg := fmt.Sprintf("%s %q: %v", name, Redact(s), err)
	for _, sec := range p.secrets {
		if len(sec) >= MinScrubLen {
			msg = strings.ReplaceAll(msg, sec, Redacted)
		}
	}
	for _, sec := range p.secrets {
		if len(sec) >= MinScrubLen && strings.Contains(msg, sec) {
			return fmt.Errorf("%s is invalid (details withheld: they would show the password)", name)
		}
	}
	return errors.New(printable(msg))
}

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
	if strings.ContainsFunc(master, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("master name %q has spaces or control characters", master)
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

// printable escapes control characters as %q would. Our own reasons quote
// what the URL holds, but go-redis's do not always ("unexpected option:
// " + key), and a newline in an error forges a log line.
func printable(msg string) string {
	if !strings.ContainsFunc(msg, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return msg
	}
	q := strconv.Quote(msg)
	return q[1 : len(q)-1]
}
