// Package testca makes throwaway certificate authorities and leaf certificates for tests, so
// every TLS test verifies certificates for real instead of skipping verification.
package testca

import (
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
	"time"
)

// CA is a self-signed certificate authority held in memory.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// CertPEM is the CA certificate, PEM-encoded, as a client would be given it.
	CertPEM []byte
}

// New makes a CA named commonName, valid for a day.
func New(commonName string) (*CA, error) { return NewConstrained(commonName) }

// NewConstrained makes a CA whose certificates are valid only for the permitted DNS domains
// (X.509 name constraints); none given means unconstrained.
func NewConstrained(commonName string, permittedDomains ...string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"harbor-connector tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	if len(permittedDomains) > 0 {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = permittedDomains
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// KeyPEM is the CA's private key, PEM-encoded (for components that sign with it).
func (ca *CA) KeyPEM() []byte {
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Leaf is a certificate issued by a CA, with its key, in the forms servers and files need.
type Leaf struct {
	TLS     tls.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Issue makes a server certificate for the given host names and IP addresses, valid for a day.
func (ca *CA) Issue(hosts ...string) (*Leaf, error) { return ca.IssueValidFor(24*time.Hour, hosts...) }

// IssueValidFor is Issue with the certificate expiring after lifetime (a renewal that changes
// the expiry, for tests of what reports it).
func (ca *CA) IssueValidFor(lifetime time.Duration, hosts ...string) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: first(hosts)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("issued certificate does not load: %w", err)
	}
	return &Leaf{TLS: pair, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// ServingFiles is a directory holding tls.crt and tls.key for hosts, as cert-manager's Secret
// volume does, issued by CA.
type ServingFiles struct {
	CA    *CA
	Dir   string
	hosts []string
}

// NewServingFiles makes a CA for the files in dir; Renew writes them.
func NewServingFiles(dir string, hosts ...string) (*ServingFiles, error) {
	ca, err := New("serving files CA")
	if err != nil {
		return nil, err
	}
	return &ServingFiles{CA: ca, Dir: dir, hosts: hosts}, nil
}

// Renew writes a new leaf valid for lifetime, as a renewal rewrites the Secret's files.
func (s *ServingFiles) Renew(lifetime time.Duration) (*Leaf, error) {
	leaf, err := s.CA.IssueValidFor(lifetime, s.hosts...)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "tls.crt"), leaf.CertPEM, 0o600); err != nil {
		return nil, err
	}
	return leaf, os.WriteFile(filepath.Join(s.Dir, "tls.key"), leaf.KeyPEM, 0o600)
}

// Served is the DER certificate a TLS server at addr presents to a client trusting roots, or nil
// when the handshake fails.
func Served(addr string, roots *x509.CertPool) []byte {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}
