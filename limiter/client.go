package limiter

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisurl"
)

// redisURLVar names the variable in errors; REDIS_URL is its fallback.
const redisURLVar = EnvPrefix + "REDIS_URL"

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

// ParseRedisURL turns a Redis URL into go-redis options. The forms are
// go-redis's (redis.ParseURL, ParseClusterURL, ParseFailoverURL) plus the
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
// "rediss" in any scheme means TLS, and "+" may replace "-":
// redis+sentinel:// is the spelling of the Python Redis-Sentinel-Url
// package, LangChain, RedisVL and Prefect (redis-py itself reads no
// Sentinel URL), with the same layout; their service_name= and
// client_type= options are not read (the master's name is the path, or
// go-redis's master_name=). Options are go-redis's query parameters
// (dial_timeout, pool_size, max_retries, protocol, ...), plus
// skip_verify=true (TLS without certificate checks, for tests only) for
// every form and sentinel_username / sentinel_password for Sentinel.
// Special characters in a password (@ : / ? # , % and space) must be
// percent-encoded, as in any URL. A Cluster form sets IsClusterMode and a
// Sentinel form MasterName, so redis.NewUniversalClient builds the right
// client.
//
// timeout (Config.RedisTimeout) becomes the read and write timeout (a
// read_timeout given in the URL also sets the write timeout, as in
// go-redis); the dial timeout is twice that, at least 1 s, since a
// connection (TCP, TLS, AUTH) is set up once per pooled connection and a
// short dial timeout under load turns into a reconnection storm. Calls are
// bounded by their context anyway (ContextTimeoutEnabled is set). A failed
// call is retried once, and a connection is dialled at most twice. Options
// given in the URL win over these defaults.
//
// An empty url is an error naming FLOODGATE_REDIS_URL and REDIS_URL. Errors
// name FLOODGATE_REDIS_URL, show the URL through RedactURL, and never
// contain the password; where a password's unencoded special characters
// broke the URL's structure, the URL is not shown at all.
func ParseRedisURL(rawURL string, timeout time.Duration) (*redis.UniversalOptions, error) {
	s := strings.TrimSpace(rawURL)
	if s == "" {
		return nil, fmt.Errorf("limiter: no Redis address: set %s (or REDIS_URL), e.g. redis://localhost:6379", redisURLVar)
	}
	if timeout <= 0 || timeout > maxRedisTimeout {
		return nil, fieldError("RedisTimeout", "must be between %v and %v, got %v", time.Millisecond, maxRedisTimeout, timeout)
	}
	o, err := redisurl.Parse(redisURLVar, s)
	if err != nil {
		return nil, fmt.Errorf("limiter: %w", err)
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
