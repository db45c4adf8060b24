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

// CA is a throwaway certificate authority, ECDSA P-256 and valid for a
// day, that issues certificates for loopback; for tests.
type CA struct {
	// Cert is the CA's certificate.
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA named name.
func NewCA(name string) (*CA, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	cert, key, err := newCertificate(tmpl, nil)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key}, nil
}

// Pool is a certificate pool holding the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteCert writes the CA's certificate to path as PEM.
func (ca *CA) WriteCert(path string) error {
	return writePEM(path, "CERTIFICATE", ca.Cert.Raw)
}

// Issue writes a certificate the CA signed, for 127.0.0.1, ::1 and
// localhost with the extended key usages given, to certFile and its key to
// keyFile, as PEM.
func (ca *CA) Issue(certFile, keyFile, name string, usage ...x509.ExtKeyUsage) error {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: usage,
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	cert, key, err := newCertificate(tmpl, ca)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("redisproc: %w", err)
	}
	if err := writePEM(certFile, "CERTIFICATE", cert.Raw); err != nil {
		return err
	}
	return writePEM(keyFile, "PRIVATE KEY", keyDER)
}

// newCertificate makes a key and a certificate for it from tmpl, valid
// from an hour ago for a day with a random serial number, signed by
// issuer, or by itself when issuer is nil.
func newCertificate(tmpl *x509.Certificate, issuer *CA) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("redisproc: %w", err)
	}
	// Random serials: a rotated certificate must not reuse its
	// predecessor's under the same CA.
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
		return nil, nil, fmt.Errorf("redisproc: %w", err)
	}
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("redisproc: certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("redisproc: %w", err)
	}
	return cert, key, nil
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("redisproc: %w", err)
	}
	return nil
}

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
// (server.crt, server.key) into dir.
func GenerateTLS(dir string) (*TLSFiles, error) {
	ca, err := NewCA("Floodgate test CA")
	if err != nil {
		return nil, err
	}
	f := &TLSFiles{
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "server.crt"),
		KeyFile:  filepath.Join(dir, "server.key"),
		CAPool:   ca.Pool(),
	}
	if err := ca.WriteCert(f.CAFile); err != nil {
		return nil, err
	}
	// ClientAuth too: a Cluster's nodes present it to each other on the
	// TLS cluster bus, which always asks for a client certificate.
	if err := ca.Issue(f.CertFile, f.KeyFile, "localhost", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
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
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: requirepass(opt.Args), MaxRetries: -1})
	defer rdb.Close()
	if err := rdb.ConfigSet(ctx, "port", "0").Err(); err != nil {
		s.Stop()
		return nil, nil, fmt.Errorf("redisproc: closing the plain-text port: %w", err)
	}
	s.Port = tlsPort
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	return s, files, nil
}
