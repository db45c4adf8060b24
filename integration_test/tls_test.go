package integration_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/internal/redisproc"
	"github.com/floodgate/floodgate/limiter"
)

// TestTLS runs the limiter over rediss:// against a redis-server that
// speaks only TLS (its plain port closed), with a certificate from a CA
// made by the test; the password travels inside TLS. Promised: the CA
// given with WithTLSConfig is trusted, skip_verify=true works without
// it, an unknown CA or a wrong name fails with a clear error (not an
// outage), a plain-text client gets no shared decision, and no error
// shows the password.
func TestTLS(t *testing.T) {
	needRedisServer(t)
	ctx := context.Background()
	srv, files, err := redisproc.StartTLS(ctx, redisproc.Options{Args: []string{"--requirepass", botPassword}})
	if err != nil {
		if strings.Contains(err.Error(), "tls") || strings.Contains(err.Error(), "TLS") {
			t.Fatalf("redis-server without TLS support? %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	url := "rediss://:" + botPassword + "@" + srv.Addr

	newLim := func(url string, opts ...limiter.ClientOption) *limiter.Limiter {
		t.Helper()
		cfg := limiter.DefaultConfig()
		cfg.RedisURL = url
		cfg.RedisTimeout = 2 * time.Second
		rdb, err := limiter.NewClient(cfg, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return newLimiter(t, rdb, cfg)
	}
	allow := func(l *limiter.Limiter) error {
		d, err := l.Allow(ctx, "alice")
		if err == nil && (d.Degraded || !d.Allowed) {
			t.Fatalf("Allow = %+v", d)
		}
		return err
	}

	// Trusting the test CA; the certificate names 127.0.0.1.
	if err := allow(newLim(url, limiter.WithTLSConfig(files.ClientConfig()))); err != nil {
		t.Fatalf("rediss:// with the CA: %v", err)
	}
	// The connection really is TLS 1.2+.
	rdb, _ := limiter.NewClient(limiter.Config{RedisURL: url, RedisTimeout: 2 * time.Second}, limiter.WithTLSConfig(files.ClientConfig()))
	defer rdb.Close()
	var seen atomic.Pointer[tls.ConnectionState]
	rdb.AddHook(tlsStateHook{&seen})
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	state := seen.Load()
	if state == nil || state.Version < tls.VersionTLS12 || len(state.PeerCertificates) == 0 || state.PeerCertificates[0].Subject.CommonName != "localhost" {
		t.Fatalf("TLS state %+v: want TLS 1.2+ with the test certificate", state)
	}

	// skip_verify=true: no CA needed (tests only: no authentication of the
	// server).
	if err := allow(newLim(url + "?skip_verify=true")); err != nil {
		t.Fatalf("rediss:// with skip_verify: %v", err)
	}

	// The system roots do not know the test CA.
	err = allow(newLim(url))
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Fatalf("rediss:// without the CA: %v, want x509.UnknownAuthorityError", err)
	}
	if strings.Contains(err.Error(), botPassword) {
		t.Fatalf("error shows the password: %v", err)
	}
	if limiter.IsUnavailable(err) {
		t.Fatalf("%v counts as an outage: a bad certificate would silently fall back to local limits", err)
	}
	t.Logf("without the CA: %v", err)

	// Another CA's roots fail the same way.
	otherDir := t.TempDir()
	other, err := redisproc.GenerateTLS(otherDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := allow(newLim(url, limiter.WithTLSConfig(other.ClientConfig()))); !errors.As(err, &unknown) {
		t.Fatalf("rediss:// with another CA: %v, want x509.UnknownAuthorityError", err)
	}

	// A certificate for 127.0.0.1 does not match another name.
	err = allow(newLim(url, limiter.WithTLSConfig(&tls.Config{RootCAs: files.CAPool, ServerName: "redis.example.com"})))
	var host x509.HostnameError
	if !errors.As(err, &host) {
		t.Fatalf("wrong server name: %v, want x509.HostnameError", err)
	}

	// Plain text to the TLS port: the server hangs up (EOF), which looks
	// like an outage, so the decision is Degraded (the FailureMode), not
	// an error. The plain port itself is closed.
	d, err := newLim("redis://:"+botPassword+"@"+srv.Addr).Allow(ctx, "alice")
	if err == nil && !d.Degraded {
		t.Fatalf("redis:// to the TLS port decided %+v", d)
	}
	t.Logf("redis:// to the TLS port: %+v, %v", d, err)
	if port, err := rdb.ConfigGet(ctx, "port").Result(); err != nil || port["port"] != "0" {
		t.Fatalf("CONFIG GET port = %v, %v; want 0 (no plain-text listener)", port, err)
	}

	// WithTLSConfig with a plain URL is refused rather than ignored.
	cfg := limiter.DefaultConfig()
	cfg.RedisURL = "redis://" + srv.Addr
	if _, err := limiter.NewClient(cfg, limiter.WithTLSConfig(files.ClientConfig())); err == nil {
		t.Fatal("WithTLSConfig with redis:// accepted")
	}
}

// tlsStateHook records the TLS state of the connections a client dials.
type tlsStateHook struct {
	state *atomic.Pointer[tls.ConnectionState]
}

func (h tlsStateHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if tc, ok := c.(*tls.Conn); ok {
			s := tc.ConnectionState()
			h.state.Store(&s)
		}
		return c, err
	}
}

func (h tlsStateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h tlsStateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
