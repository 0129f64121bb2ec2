// Package intercept mints the leaf certificates the forward proxy presents for a connector's
// registry host, signed by the product's interception CA (an isCA certificate from cert-manager,
// name-constrained to the connector hosts when the install lists permitted domains). Leaves are
// cached per host and re-minted before they expire; the CA is re-read when its files change.
package intercept

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/alauda/harbor-connector/policies"
)

// leafLifetime is how long a minted leaf is valid; it is re-minted at 80 % of that.
const leafLifetime = 24 * time.Hour

// Authority signs leaves with the CA in CertFile/KeyFile.
type Authority struct {
	CertFile, KeyFile string
	// PermittedDomains, when set, are the only names leaves are minted for (the CA's name
	// constraints should say the same, so a leaked key cannot impersonate anything else).
	PermittedDomains []string

	mu      sync.Mutex
	ca      *x509.Certificate
	caKey   crypto.Signer
	caStamp time.Time
	leafKey *ecdsa.PrivateKey
	leaves  map[string]*tls.Certificate
	refresh map[string]time.Time
}

// ErrNotPermitted: the host is outside the permitted domains.
var ErrNotPermitted = errors.New("host outside the interception CA's permitted domains")

// Permitted reports whether a host may be intercepted under PermittedDomains.
func (a *Authority) Permitted(host string) bool {
	return policies.HostPermitted(host, a.PermittedDomains)
}

// Certificate returns a leaf for host (a DNS name or IP), minting it if needed.
func (a *Authority) Certificate(host string) (*tls.Certificate, error) {
	if !a.Permitted(host) {
		return nil, fmt.Errorf("%w: %s", ErrNotPermitted, host)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.loadCA(); err != nil {
		return nil, err
	}
	if c, ok := a.leaves[host]; ok && time.Now().Before(a.refresh[host]) {
		return c, nil
	}
	c, err := a.mint(host)
	if err != nil {
		return nil, err
	}
	a.leaves[host] = c
	a.refresh[host] = time.Now().Add(leafLifetime * 8 / 10)
	return c, nil
}

// loadCA (re)reads the CA when its file changed (rotation); minted leaves are then dropped.
func (a *Authority) loadCA() error {
	st, err := os.Stat(a.CertFile)
	if err != nil {
		return fmt.Errorf("interception CA: %w", err)
	}
	if a.ca != nil && st.ModTime().Equal(a.caStamp) {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
	if err != nil {
		return fmt.Errorf("interception CA %s: %w", a.CertFile, err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	if !ca.IsCA {
		return fmt.Errorf("interception CA %s is not a CA certificate (isCA: true)", a.CertFile)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("interception CA key %s cannot sign", a.KeyFile)
	}
	if a.leafKey == nil {
		if a.leafKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return err
		}
	}
	a.ca, a.caKey, a.caStamp = ca, signer, st.ModTime()
	a.leaves, a.refresh = map[string]*tls.Certificate{}, map[string]time.Time{}
	return nil
}

func (a *Authority) mint(host string) (*tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(leafLifetime)
	if notAfter.After(a.ca.NotAfter) {
		notAfter = a.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.ca, &a.leafKey.PublicKey, a.caKey)
	if err != nil {
		return nil, fmt.Errorf("minting a certificate for %s: %w", host, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, a.ca.Raw}, PrivateKey: a.leafKey}, nil
}
