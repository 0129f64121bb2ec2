package intercept

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/testca"
)

func authority(t *testing.T, ca *testca.CA, permitted ...string) *Authority {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), ca.CertPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), ca.KeyPEM(), 0o600))
	return &Authority{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), PermittedDomains: permitted}
}

func verify(t *testing.T, pool *x509.CertPool, der []byte, name string) error {
	t.Helper()
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name})
	return err
}

// With permitted domains, leaves exist only for them, and the name-constrained CA cannot vouch
// for any other name, even for a leaf someone else signs with its key.
func TestNameConstrainedInterception(t *testing.T) {
	ca, err := testca.NewConstrained("interception CA", "harbor.test")
	require.NoError(t, err)
	a := authority(t, ca, "harbor.test")

	leaf, err := a.Certificate("harbor.test")
	require.NoError(t, err)
	assert.NoError(t, verify(t, ca.Pool(), leaf.Certificate[0], "harbor.test"))
	assert.Error(t, verify(t, ca.Pool(), leaf.Certificate[0], "evil.example"), "the leaf is for harbor.test only")

	sub, err := a.Certificate("registry.harbor.test")
	require.NoError(t, err, "subdomains of a permitted domain")
	assert.NoError(t, verify(t, ca.Pool(), sub.Certificate[0], "registry.harbor.test"))

	_, err = a.Certificate("evil.example")
	assert.ErrorIs(t, err, ErrNotPermitted)

	// A leaf for another name signed with the CA's key (a leaked key) fails name constraints.
	forged, err := ca.Issue("evil.example")
	require.NoError(t, err)
	err = verify(t, ca.Pool(), forged.TLS.Certificate[0], "evil.example")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "constraint")
}

// Leaves are cached, and a rotated CA (new files) is picked up: new leaves chain to the new CA.
func TestLeafCacheAndRotation(t *testing.T) {
	first, err := testca.New("first")
	require.NoError(t, err)
	a := authority(t, first)
	l1, err := a.Certificate("harbor.test")
	require.NoError(t, err)
	l2, err := a.Certificate("harbor.test")
	require.NoError(t, err)
	assert.Same(t, l1, l2, "cached")

	second, err := testca.New("second")
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	require.NoError(t, os.WriteFile(a.CertFile, second.CertPEM, 0o600))
	require.NoError(t, os.WriteFile(a.KeyFile, second.KeyPEM(), 0o600))
	now := time.Now().Add(time.Second)
	require.NoError(t, os.Chtimes(a.CertFile, now, now))
	l3, err := a.Certificate("harbor.test")
	require.NoError(t, err)
	assert.NoError(t, verify(t, second.Pool(), l3.Certificate[0], "harbor.test"))
	assert.Error(t, verify(t, first.Pool(), l3.Certificate[0], "harbor.test"))
}
