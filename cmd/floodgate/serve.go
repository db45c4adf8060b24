package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/cli"
	"github.com/floodgate/floodgate/internal/listen"
	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
	"github.com/floodgate/floodgate/metrics"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	var sf settingsFlags
	sf.register(fs)
	addr := fs.String("addr", "", "listen on `HOST:PORT` or unix:/PATH (default FLOODGATE_HTTP_ADDR, else "+defaultAddr+")")
	cfg, set, err := sf.parseAll(fs, args)
	if err != nil {
		return err
	}
	if *addr != "" {
		set.Addr = *addr
	}
	if err := set.validate(); err != nil {
		return err
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "floodgate: "+format+"\n", a...)
	}
	if set.TLSCert != "" {
		file := func(path, name string) listen.File { return listen.File{Path: path, Setting: "FLOODGATE_HTTP_" + name} }
		files := listen.TLSFiles{Cert: file(set.TLSCert, "TLS_CERT"), Key: file(set.TLSKey, "TLS_KEY"), ClientCA: file(set.ClientCA, "CLIENT_CA")}
		if set.tls, err = listen.LoadTLS(ctx, files, logf); err != nil {
			return cli.Usagef("%s", errText(err))
		}
	}
	if set.tls == nil && !listen.Local(set.Addr) {
		warn(stderr, "WARNING: serving "+set.Addr+" over plain HTTP: the bearer token and every answer cross the network in clear text.",
			"WARNING: set FLOODGATE_HTTP_TLS_CERT and FLOODGATE_HTTP_TLS_KEY (docs/sidecar.md), or listen on 127.0.0.1 or a unix: socket.")
	}
	serveGC(os.Getenv("GOGC"))

	var embedded *redisproc.Server
	if cfg.RedisURL == "" {
		embedded, err = redisproc.Start(ctx, redisproc.Options{})
		if err != nil {
			if errors.Is(err, redisproc.ErrNotInstalled) {
				return cli.Usagef("no Redis named (FLOODGATE_REDIS_URL or REDIS_URL) and no redis-server on PATH to start an embedded one")
			}
			return fmt.Errorf("starting the embedded redis-server: %w", err)
		}
		defer embedded.Stop()
		cfg.RedisURL = "redis://" + embedded.Addr
		warn(stderr, "WARNING: no FLOODGATE_REDIS_URL or REDIS_URL: started an EMBEDDED redis-server on "+embedded.Addr+".",
			"WARNING: its state dies with this process and is shared with no other host: a demo, not production.")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	obs, err := metrics.New(reg)
	if err != nil {
		return err
	}
	cfg.Observer = obs
	lim, rdb, err := newLimiter(cfg, func(o *redis.UniversalOptions) {
		// One connection per concurrent request at most; the limiter
		// coalesces user decisions, so a modest pool serves many clients.
		o.PoolSize = max(o.PoolSize, 64)
	})
	if err != nil {
		return err
	}
	defer rdb.Close()
	// New logs an unsafe maxmemory-policy; scrapes keep the gauge current.
	if err := obs.WatchEviction(lim.CheckEviction); err != nil {
		return err
	}

	ln, err := listen.Open(set.Addr)
	if err != nil {
		return err
	}
	return serveOn(ctx, ln, lim, rdb, set, reg, logf)
}

// warn prints lines between two rows of '!': what an operator must not
// miss in a log.
func warn(w io.Writer, lines ...string) {
	bar := strings.Repeat("!", 78)
	fmt.Fprintf(w, "%s\nfloodgate: %s\n%s\n", bar, strings.Join(lines, "\nfloodgate: "), bar)
}

// serveGCPercent is the garbage collector's target for floodgate serve
// when GOGC is not set: each request allocates a few KiB of short-lived
// garbage on a live heap of a few MiB, so the default (100) collects
// several times a second; at 400 the collector's share of the server's
// CPU falls by about three quarters (BenchmarkServe at 32 clients: 10-13%
// less CPU per decision), for about 12 MiB more resident memory.
const serveGCPercent = 400

// serveGC sets serveGCPercent unless gogc (the GOGC variable) is set,
// which the runtime has applied already.
func serveGC(gogc string) {
	if gogc == "" {
		debug.SetGCPercent(serveGCPercent)
	}
}

// serveOn serves on ln, logging where and how, until ctx ends, then shuts
// down: it stops accepting, ends waits at once, lets in-flight requests
// finish within set.ShutdownTimeout and closes what is left. It holds no
// slots or probes of its own, so it releases nothing.
func serveOn(ctx context.Context, ln net.Listener, lim *limiter.Limiter, rdb redis.UniversalClient, set httpSettings,
	reg *prometheus.Registry, logf func(string, ...any)) error {
	draining, drain := context.WithCancel(context.Background())
	defer drain()
	s, err := newServer(lim, rdb, set, reg, draining, logf)
	if err != nil {
		ln.Close()
		return err
	}
	srv := newHTTPServer(s, set, logf)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(listen.Limit(ln, set.maxConns(), set.tls)) }()
	auth, where := "no token: local clients only", "http://"+ln.Addr().String()
	if set.Token != "" {
		auth = "bearer token required on /v1 and /metrics"
	}
	if set.tls != nil {
		where = "https://" + ln.Addr().String()
		if set.tls.ClientCAs != nil {
			auth += "; client certificate required"
		}
	} else if ln.Addr().Network() == "unix" {
		where = set.Addr
	}
	logf("serving on %s (%s); Redis %s", where, auth, limiter.RedactURL(lim.Config().RedisURL))
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logf("shutting down: finishing in-flight requests (at most %v)", set.ShutdownTimeout)
	drain()
	sctx, cancel := context.WithTimeout(context.Background(), set.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		logf("shutdown: requests still running after %v were cut off", set.ShutdownTimeout)
	}
	<-errc
	logf("stopped")
	return nil
}

// Connection bounds. Bodies are at most 64 KiB: readTimeout is generous.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	// maxHeaderBytes is the request line and headers: net/http reads up
	// to 4 KiB past http.Server.MaxHeaderBytes before it answers 431.
	maxHeaderBytes = 16 << 10
)

// newHTTPServer sets the connection bounds.
func newHTTPServer(h http.Handler, set httpSettings, logf func(string, ...any)) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		// A wait may take MaxWait; the answer must still get out.
		WriteTimeout:   set.MaxWait + 10*time.Second,
		IdleTimeout:    cmp.Or(set.IdleTimeout, defaultIdleTimeout),
		MaxHeaderBytes: maxHeaderBytes - 4<<10,
		// net/http's own messages (bad requests on the wire), one line
		// each; log.Logger serializes the writes.
		ErrorLog: log.New(logWriter(func(p []byte) { logf("http: %s", cli.OneLine(string(p))) }), "", 0),
	}
}

type logWriter func(p []byte)

func (w logWriter) Write(p []byte) (int, error) { w(p); return len(p), nil }
