package listen

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
)

// File is a PEM file and the setting that named it: errors quote the
// setting, so they say what to fix.
type File struct {
	Path, Setting string
}

// TLSFiles are the files of LoadTLS: a certificate (chain, leaf first), its
// key and, optionally, a CA every client certificate must be signed by.
type TLSFiles struct {
	Cert, Key, ClientCA File
}

// LoadTLS reads f into a server configuration: TLS 1.2 or later, HTTP/1.1,
// a client certificate required when f.ClientCA is set. Each new
// connection stats the certificate and key (two system calls beside a
// handshake's signature) and reads them again when either changed, as
// SIGHUP does until ctx ends: a rotated pair serves from the next
// connection, without a restart. A pair that does not load (a
// half-written file, a key that does not match) keeps the current one
// and is logged once per change of the files.
func LoadTLS(ctx context.Context, f TLSFiles, logf func(string, ...any)) (*tls.Config, error) {
	s := &certStore{cert: f.Cert, key: f.Key, logf: logf}
	if err := s.reload(true); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.get, NextProtos: []string{"http/1.1"}}
	if ca := f.ClientCA; ca.Path != "" {
		pem, err := os.ReadFile(ca.Path)
		if err != nil {
			return nil, fmt.Errorf("listen: %s: %w", ca.Setting, err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("listen: %s: %s holds no PEM certificate", ca.Setting, ca.Path)
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

// certStore holds the certificate and key LoadTLS serves.
type certStore struct {
	cert, key File
	logf      func(string, ...any)

	mu    sync.Mutex
	pair  *tls.Certificate
	stamp string // fileStamp of both files at the last read
}

func (s *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	_ = s.reload(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pair, nil
}

// reload reads the pair when force is set or either file changed since
// the last read; on error the current pair stays.
func (s *certStore) reload(force bool) error {
	stamp := fileStamp(s.cert.Path) + fileStamp(s.key.Path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !force && stamp == s.stamp {
		return nil
	}
	s.stamp = stamp
	pair, err := loadPair(s.cert, s.key)
	if err != nil {
		if s.pair != nil {
			s.logf("TLS: %v; still serving the certificate read before", err)
		}
		return err
	}
	s.pair = pair
	s.logf("TLS: serving the certificate in %s (names %v, addresses %v, valid until %s)",
		s.cert.Path, pair.Leaf.DNSNames, pair.Leaf.IPAddresses, pair.Leaf.NotAfter.UTC().Format(time.DateTime))
	return nil
}

// loadPair reads a PEM certificate chain and its key, each error naming
// the setting to fix.
func loadPair(cert, key File) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(cert.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cert.Setting, err)
	}
	keyPEM, err := os.ReadFile(key.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key.Setting, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s (%s, %s): %w", cert.Setting, key.Setting, cert.Path, key.Path, err)
	}
	return &pair, nil
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
