package main

import (
	"cmp"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/internal/configfile"
	"github.com/floodgate/floodgate/internal/listen"
	"github.com/floodgate/floodgate/limiter"
)

// httpSettings configure serve beyond the limiter's Config: the
// FLOODGATE_HTTP_* variables (docs/sidecar.md, "Settings") its env tags
// name, read by loadHTTP; 0 means the default for MaxConns, MaxNames and
// IdleTimeout.
type httpSettings struct {
	Addr string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// /v1 and /metrics; never a flag, since flags show in ps.
	Token string `env:"HTTP_TOKEN"`
	// MaxWait caps the timeout_ms of bucket waits and slot acquires;
	// MaxWaits, the requests waiting at once (more get 429).
	MaxWait  time.Duration `env:"HTTP_MAX_WAIT" envDefault:"30s"`
	MaxWaits int           `env:"HTTP_MAX_WAITS" envDefault:"1024"`
	// ShutdownTimeout bounds how long in-flight requests may finish after
	// SIGINT or SIGTERM.
	ShutdownTimeout time.Duration `env:"HTTP_SHUTDOWN_TIMEOUT" envDefault:"10s"`
	// MaxConns caps open client connections; past it, new ones wait in
	// the kernel's accept queue.
	MaxConns int `env:"HTTP_MAX_CONNS" envDefault:"0"`
	// MaxNames caps the slot pool names, and apart the backoff names, the
	// server holds state for; a new name past it is refused (400).
	MaxNames    int           `env:"HTTP_MAX_NAMES" envDefault:"0"`
	IdleTimeout time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"0"`
	// TLSCert and TLSKey, PEM files, make serve speak HTTPS; ClientCA
	// asks every client for a certificate it signed (internal/listen).
	TLSCert  string `env:"HTTP_TLS_CERT"`
	TLSKey   string `env:"HTTP_TLS_KEY"`
	ClientCA string `env:"HTTP_CLIENT_CA"`

	tls *tls.Config // loaded from the files by serve (listen.LoadTLS)
}

const (
	defaultAddr        = "127.0.0.1:8080"
	defaultMaxNames    = 1024
	defaultIdleTimeout = 2 * time.Minute
	// minTokenLen keeps tokens out of guessing range.
	minTokenLen = 16
)

// settingsFlags are the flags every command shares.
type settingsFlags struct {
	config string
}

func (s *settingsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.config, "config", "", "read the `FILE`'s rate_limiting: block (the original bot's config.yaml); FLOODGATE_* variables override it")
}

// load returns the effective limiter settings: defaults, then --config,
// then the FLOODGATE_* environment, validated.
func (s *settingsFlags) load() (limiter.Config, error) {
	base := limiter.DefaultConfig()
	if s.config != "" {
		var err error
		if base, err = configfile.Read(s.config, base); err != nil {
			return limiter.Config{}, cli.Usagef("--config: %s", errText(err))
		}
	}
	cfg, err := limiter.EnvOverrides(base)
	if err != nil {
		return limiter.Config{}, cli.Usagef("%s", errText(err))
	}
	return cfg, nil
}

// newLimiter builds a Limiter on cfg's Redis, tweak adjusting the
// client's options. A URL or setting the library refuses is a usage error.
func newLimiter(cfg limiter.Config, tweak func(*redis.UniversalOptions)) (*limiter.Limiter, redis.UniversalClient, error) {
	rdb, err := limiter.NewClient(cfg, limiter.WithRedisOptions(tweak))
	if err != nil {
		return nil, nil, cli.Usagef("%s", errText(err))
	}
	lim, err := limiter.New(rdb, cfg)
	if err != nil {
		rdb.Close()
		return nil, nil, cli.Usagef("%s", errText(err))
	}
	return lim, rdb, nil
}

// parseAll parses the flags of a command that takes no arguments (config,
// serve) and returns the effective limiter and HTTP settings; the caller
// applies its own flags over the HTTP ones.
func (s *settingsFlags) parseAll(fs *flag.FlagSet, args []string) (limiter.Config, httpSettings, error) {
	if err := parseFlags(fs, args); err != nil {
		return limiter.Config{}, httpSettings{}, err
	}
	if fs.NArg() > 0 {
		return limiter.Config{}, httpSettings{}, cli.Usagef("%s takes no arguments, got %q", strings.TrimPrefix(fs.Name(), "floodgate "), fs.Args())
	}
	cfg, err := s.load()
	if err != nil {
		return limiter.Config{}, httpSettings{}, err
	}
	set, err := loadHTTP()
	if err != nil {
		return limiter.Config{}, httpSettings{}, err
	}
	return cfg, set, nil
}

// errText is an error of the library or of an internal package as
// floodgate shows it: without the package's prefix, secrets scrubbed.
func errText(err error) string {
	msg := err.Error()
	for _, pkg := range []string{"limiter: ", "listen: ", "configfile: ", "strictjson: ", "sentpath: "} {
		msg = strings.TrimPrefix(msg, pkg)
	}
	return scrub(msg)
}

// scrub removes the Redis password and the HTTP token from a message,
// should one ever quote them.
func scrub(msg string) string {
	if tok := os.Getenv("FLOODGATE_HTTP_TOKEN"); len(tok) >= 4 {
		msg = strings.ReplaceAll(msg, tok, "xxxxx")
	}
	for _, n := range []string{"FLOODGATE_REDIS_URL", "REDIS_URL"} {
		if v := os.Getenv(n); v != "" {
			msg = strings.ReplaceAll(msg, v, limiter.RedactURL(v))
		}
	}
	return msg
}

// loadHTTP reads serve's own variables; flags set later override them.
// An empty variable means its default.
func loadHTTP() (httpSettings, error) {
	var h httpSettings
	err := env.ParseWithOptions(&h, env.Options{Prefix: limiter.EnvPrefix, FuncMap: map[reflect.Type]env.ParserFunc{
		reflect.TypeFor[time.Duration](): parseSeconds,
		reflect.TypeFor[int](): func(v string) (any, error) {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("%q is not a whole number", v)
			}
			return n, nil
		},
	}})
	if pe, ok := errors.AsType[env.ParseError](err); ok {
		f, _ := reflect.TypeFor[httpSettings]().FieldByName(pe.Name)
		return h, cli.Usagef("%s%s: %v", limiter.EnvPrefix, f.Tag.Get("env"), pe.Err)
	}
	return h, err
}

// parseSeconds reads plain seconds ("30") or a Go duration ("30s").
func parseSeconds(s string) (any, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1e9 {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, fmt.Errorf("%q is neither seconds nor a duration such as 30s", s)
	}
	return d, nil
}

// validate checks the HTTP settings, including the rule that only
// loopback or a unix socket may be served without a token.
func (h httpSettings) validate() error {
	if err := listen.CheckAddr(h.Addr); err != nil {
		return cli.Usagef("%s", errText(err))
	}
	switch {
	case h.MaxWait < time.Millisecond || h.MaxWait > time.Hour:
		return cli.Usagef("max wait (FLOODGATE_HTTP_MAX_WAIT) must be between 1ms and 1h, got %v", h.MaxWait)
	case h.MaxWaits < 1 || h.MaxWaits > 1_000_000:
		return cli.Usagef("max waits (FLOODGATE_HTTP_MAX_WAITS) must be between 1 and 1000000, got %d", h.MaxWaits)
	case h.ShutdownTimeout < 0 || h.ShutdownTimeout > time.Hour:
		return cli.Usagef("shutdown timeout (FLOODGATE_HTTP_SHUTDOWN_TIMEOUT) must be between 0 and 1h, got %v", h.ShutdownTimeout)
	case h.MaxConns < 0 || h.MaxConns > 1_000_000:
		return cli.Usagef("max connections (FLOODGATE_HTTP_MAX_CONNS) must be between 1 and 1000000 (0: the default), got %d", h.MaxConns)
	case h.MaxNames < 0 || h.MaxNames > 1_000_000:
		return cli.Usagef("max names (FLOODGATE_HTTP_MAX_NAMES) must be between 1 and 1000000 (0: the default), got %d", h.MaxNames)
	case h.IdleTimeout != 0 && (h.IdleTimeout < 100*time.Millisecond || h.IdleTimeout > time.Hour):
		return cli.Usagef("idle timeout (FLOODGATE_HTTP_IDLE_TIMEOUT) must be between 100ms and 1h (0: the default, 2m), got %v", h.IdleTimeout)
	case (h.TLSCert == "") != (h.TLSKey == ""):
		return cli.Usagef("FLOODGATE_HTTP_TLS_CERT and FLOODGATE_HTTP_TLS_KEY go together: set both (PEM files) or neither")
	case h.ClientCA != "" && h.TLSCert == "":
		return cli.Usagef("FLOODGATE_HTTP_CLIENT_CA needs FLOODGATE_HTTP_TLS_CERT and FLOODGATE_HTTP_TLS_KEY: client certificates are asked over TLS")
	case h.TLSCert != "" && strings.HasPrefix(h.Addr, "unix:"):
		return cli.Usagef("FLOODGATE_HTTP_TLS_CERT with a unix socket: no client speaks TLS over one; its file mode (0660) guards it")
	}
	if err := checkToken(h.Token); err != nil {
		return err
	}
	if h.Token == "" && !listen.Local(h.Addr) {
		return cli.Usagef("refusing to listen on %s without FLOODGATE_HTTP_TOKEN: anyone who reaches it could reset users and take slots; set a token or listen on 127.0.0.1", h.Addr)
	}
	return nil
}

// checkToken refuses a token a client could not send as it is: the bytes
// of an HTTP header value that survive trimming are visible ASCII (a
// control character made every request a 400; a non-ASCII character is
// several bytes, so a byte count overstated its strength).
func checkToken(token string) error {
	if token == "" {
		return nil
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c < 0x21 || c > 0x7e {
			return cli.Usagef("FLOODGATE_HTTP_TOKEN: byte %d is %#02x: use visible ASCII only, no spaces or control characters (e.g. openssl rand -hex 16)", i, c)
		}
	}
	if len(token) < minTokenLen {
		return cli.Usagef("FLOODGATE_HTTP_TOKEN is %d characters, want at least %d (e.g. openssl rand -hex 16)", len(token), minTokenLen)
	}
	return nil
}

// writeConfig prints the effective settings, one per line, secrets
// redacted: the fields of cfg and h that have a variable, by its name.
func writeConfig(w io.Writer, cfg limiter.Config, h httpSettings) {
	rows := func(v any, shown map[string]string) {
		t, val := reflect.TypeOf(v), reflect.ValueOf(v)
		for i := range t.NumField() {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			s, ok := shown[t.Field(i).Name]
			if !ok {
				s = fmt.Sprint(val.Field(i).Interface())
			}
			fmt.Fprintf(w, "%-40s %s\n", limiter.EnvPrefix+tag, s)
		}
	}
	rows(cfg, map[string]string{
		"RedisURL": cmp.Or(limiter.RedactURL(cfg.RedisURL), "(none: serve starts an embedded redis-server)"),
		"APIRates": cmp.Or(cfg.APIRates.String(), "none"),
	})
	token := "(unset: loopback only)"
	if h.Token != "" {
		token = "(set, hidden)"
	}
	rows(h, map[string]string{
		"Token":       token,
		"MaxConns":    strconv.Itoa(h.maxConns()),
		"MaxNames":    strconv.Itoa(h.maxNames()),
		"IdleTimeout": cmp.Or(h.IdleTimeout, defaultIdleTimeout).String(),
		"TLSCert":     cmp.Or(h.TLSCert, "(unset)"),
		"TLSKey":      cmp.Or(h.TLSKey, "(unset)"),
		"ClientCA":    cmp.Or(h.ClientCA, "(unset)"),
	})
}

// maxConns is MaxConns or listen's default.
func (h httpSettings) maxConns() int {
	return cmp.Or(h.MaxConns, listen.DefaultMaxConns())
}

// maxNames is MaxNames or defaultMaxNames.
func (h httpSettings) maxNames() int {
	return cmp.Or(h.MaxNames, defaultMaxNames)
}
