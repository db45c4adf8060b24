package redisproc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// TLSFiles are a throwaway certificate authority and a server certificate
// it signed for 127.0.0.1, ::1 and localhost, as PEM files; for tests.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
	// CAPool holds the CA alone.
	CAPool *x509.CertPool
}

// ClientConfig returns a client TLS configuration trusting only the CA.
func (f *TLSFiles) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: f.CAPool, MinVersion: tls.VersionTLS12}
}

// ServerArgs are the redis-server arguments serving TLS on tlsPort with
// these files; clients need no certificate of their own.
func (f *TLSFiles) ServerArgs(tlsPort int) []string {
	return []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", f.CertFile, "--tls-key-file", f.KeyFile, "--tls-ca-cert-file", f.CAFile,
		"--tls-auth-clients", "no",
	}
}

// GenerateTLS writes a fresh CA (ca.crt) and server certificate
// (server.crt, server.key), ECDSA P-256, valid for a day, into dir.
func GenerateTLS(dir string) (*TLSFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Floodgate test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("redisproc: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// ClientAuth too: a Cluster's nodes present it to each other on the
		// TLS cluster bus, which always asks for a client certificate.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("redisproc: server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	f := &TLSFiles{
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "server.crt"),
		KeyFile:  filepath.Join(dir, "server.key"),
		CAPool:   x509.NewCertPool(),
	}
	f.CAPool.AddCert(ca)
	for _, w := range []struct {
		path, typ string
		der       []byte
	}{{f.CAFile, "CERTIFICATE", caDER}, {f.CertFile, "CERTIFICATE", der}, {f.KeyFile, "PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), 0o600); err != nil {
			return nil, fmt.Errorf("redisproc: %w", err)
		}
	}
	return f, nil
}

// StartTLS starts a server that speaks TLS only: it generates a CA and a
// server certificate in the server's directory (see GenerateTLS), serves
// TLS on a free port and, once the server answers, closes its plain-text
// port (CONFIG SET port 0). The returned Server's Addr and Port are the
// TLS ones.
func StartTLS(ctx context.Context, opt Options) (*Server, *TLSFiles, error) {
	ownDir := false
	if opt.Dir == "" {
		dir, err := os.MkdirTemp("", "floodgate-redis-tls-")
		if err != nil {
			return nil, nil, fmt.Errorf("redisproc: %w", err)
		}
		opt.Dir, ownDir = dir, true
	}
	cleanup := func() {
		if ownDir {
			_ = os.RemoveAll(opt.Dir)
		}
	}
	files, err := GenerateTLS(opt.Dir)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	tlsPort, err := FreePort()
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	opt.Args = append(files.ServerArgs(tlsPort), opt.Args...)
	s, err := Start(ctx, opt)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	s.ownDir = ownDir
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: opt.Password, MaxRetries: -1})
	defer rdb.Close()
	if err := rdb.ConfigSet(ctx, "port", "0").Err(); err != nil {
		s.Stop()
		return nil, nil, fmt.Errorf("redisproc: closing the plain-text port: %w", err)
	}
	s.Port = tlsPort
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	return s, files, nil
}
