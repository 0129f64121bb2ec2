package csi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func selfSigned(t *testing.T, subject pkix.Name) []byte {
	t.Helper()
	p, err := newSelfSigned(subject)
	require.NoError(t, err)
	return p
}

func newSelfSigned(subject pkix.Name) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subject, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// testBundle is a CA certificate for rendering tests.
var testBundle = func() []byte {
	p, err := newSelfSigned(pkix.Name{CommonName: "connectors test CA"})
	if err != nil {
		panic(err)
	}
	return p
}()

// The names agree with OpenSSL's own `openssl x509 -subject_hash`, including the canonical
// form's case folding, white space folding and string re-encoding.
func TestSubjectHashMatchesOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	require.NoError(t, err, "openssl is part of Debian's base system; install it with apt-get install openssl")
	utf8Name := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "Prüf   CA  Ünïcode"},
	}}
	subjects := []pkix.Name{
		{CommonName: "connectors-proxy CA"},
		{CommonName: "  Mixed   Case\tCA  ", Organization: []string{"Alauda"}, OrganizationalUnit: []string{"Platform Team"}, Country: []string{"CN"}},
		utf8Name,
		{CommonName: "x@example.com", SerialNumber: "42"},
	}
	dir := t.TempDir()
	var bundle []byte
	want := map[string]bool{}
	for i, s := range subjects {
		pemBytes := selfSigned(t, s)
		bundle = append(bundle, pemBytes...)
		f := filepath.Join(dir, fmt.Sprintf("%d.pem", i))
		require.NoError(t, os.WriteFile(f, pemBytes, 0o600))
		out, err := exec.Command(openssl, "x509", "-subject_hash", "-noout", "-in", f).CombinedOutput()
		require.NoError(t, err, string(out))
		want[strings.TrimSpace(string(out))+".0"] = true
	}
	files, err := hashedCertFiles(bundle)
	require.NoError(t, err)
	got := map[string]bool{}
	for name := range files {
		got[name] = true
	}
	assert.Equal(t, want, got)
}

// Two certificates with the same subject (a CA before and after rotation) get .0 and .1.
func TestSameSubjectGetsNextSuffix(t *testing.T) {
	name := pkix.Name{CommonName: "connectors interception CA"}
	old, renewed := selfSigned(t, name), selfSigned(t, name)
	files, err := hashedCertFiles(append(append([]byte{}, old...), renewed...))
	require.NoError(t, err)
	require.Len(t, files, 2)
	h, err := subjectHash(mustParse(t, old).RawSubject)
	require.NoError(t, err)
	assert.Equal(t, old, files[fmt.Sprintf("%08x.0", h)])
	assert.Equal(t, renewed, files[fmt.Sprintf("%08x.1", h)])
}

func mustParse(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(p)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}
