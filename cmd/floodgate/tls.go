package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/floodgate/floodgate/internal/cli"
)

// certStore holds serve's certificate and key. Each new TLS connection
// stats both files (two system calls beside a handshake's signature) and
// reads them again when either changed, as SIGHUP does: a rotated pair
// serves from the next connection, without a restart. A pair that does not
// load (a half-written file, a key that does not match) keeps the current
// one and is logged once per change of the files.
type certStore struct {
	certFile, keyFile string
	logf              func(string, ...any)

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp string // fileStamp of both files at the last read
}

// loadTLS reads the TLS files of h: nil without TLS. Until ctx ends,
// SIGHUP reads the certificate and key again.
func (h httpSettings) loadTLS(ctx context.Context, logf func(string, ...any)) (*tls.Config, error) {
	if h.TLSCert == "" {
		return nil, nil
	}
	s := &certStore{certFile: h.TLSCert, keyFile: h.TLSKey, logf: logf}
	if err := s.reload(true); err != nil {
		return nil, cli.Usagef("%v", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.get, NextProtos: []string{"http/1.1"}}
	if h.ClientCA != "" {
		pem, err := os.ReadFile(h.ClientCA)
		if err != nil {
			return nil, cli.Usagef("FLOODGATE_HTTP_CLIENT_CA: %v", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, cli.Usagef("FLOODGATE_HTTP_CLIENT_CA: %s holds no PEM certificate", h.ClientCA)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = s.reload(true)
			}
		}
	}()
	return cfg, nil
}

func (s *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	_ = s.reload(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, nil
}

// reload reads the pair when force is set or either file changed since
// the last read; on error the current pair stays.
func (s *certStore) reload(force bool) error {
	stamp := fileStamp(s.certFile) + fileStamp(s.keyFile)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !force && stamp == s.stamp {
		return nil
	}
	s.stamp = stamp
	cert, err := loadPair(s.certFile, s.keyFile)
	if err != nil {
		if s.cert != nil {
			s.logf("TLS: %v; still serving the certificate read before", err)
		}
		return err
	}
	s.cert = cert
	s.logf("TLS: serving the certificate in %s (names %v, addresses %v, valid until %s)",
		s.certFile, cert.Leaf.DNSNames, cert.Leaf.IPAddresses, cert.Leaf.NotAfter.UTC().Format(time.DateTime))
	return nil
}

// loadPair reads a PEM certificate chain and its key, each error naming
// the variable to fix.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("FLOODGATE_HTTP_TLS_CERT: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("FLOODGATE_HTTP_TLS_KEY: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("FLOODGATE_HTTP_TLS_CERT and FLOODGATE_HTTP_TLS_KEY (%s, %s): %w", certFile, keyFile, err)
	}
	return &cert, nil
}

// fileStamp identifies a file's version: its inode (a rename or a
// Kubernetes secret's symlink swap makes a new one), size and mtime.
func fileStamp(name string) string {
	if fi, err := os.Stat(name); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			return fmt.Sprintf("%d.%d.%d;", st.Ino, st.Size, fi.ModTime().UnixNano())
		}
	}
	return "-;"
}
