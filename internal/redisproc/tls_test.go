package redisproc

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
)

// TestGenerateTLS: the server certificate verifies against the CA pool
// for 127.0.0.1 and localhost, as a server and as a cluster-bus client,
// and not against another CA's pool.
func TestGenerateTLS(t *testing.T) {
	f, err := GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert := loadCert(t, f.CertFile, f.KeyFile)
	for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
		for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: f.CAPool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
				t.Errorf("%s, usage %v: %v", host, use, err)
			}
		}
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool()}); err == nil {
		t.Error("verified against another CA")
	}
	// A certificate issued for one usage only is refused for the other.
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	if err := other.Issue(cf, kf, "bot", x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	cert = loadCert(t, cf, kf)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client usage: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client-only certificate verified as a server's")
	}
}

// loadCert loads a certificate and its key as a server would, and returns
// the certificate.
func loadCert(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
