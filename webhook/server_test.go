package webhook

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/testca"
)

// The webhook serves the certificate in its directory, serves a renewal without a restart, and
// exports the expiry of the certificate it serves.
func TestServerServesRenewedCertificateAndItsExpiry(t *testing.T) {
	files, err := testca.NewServingFiles(t.TempDir(), "127.0.0.1")
	require.NoError(t, err)
	ca, dir := files.CA, files.Dir
	write := func(lifetime time.Duration) *testca.Leaf {
		leaf, err := files.Renew(lifetime)
		require.NoError(t, err)
		return leaf
	}
	first := write(24 * time.Hour)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	srv, err := NewServer("127.0.0.1", port, dir)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	served := func() []byte { return testca.Served(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), ca.Pool()) }
	expiry := func() float64 { return testutil.ToFloat64(certificateExpiry) }
	require.Eventually(t, func() bool { return string(served()) == string(first.TLS.Certificate[0]) }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, float64(first.TLS.Leaf.NotAfter.Unix()), expiry())

	second := write(48 * time.Hour)
	// As in proxyserver's reload test: a renewal written before the watcher's file watches exist
	// is picked up by its 10 s poll.
	require.Eventually(t, func() bool { return string(served()) == string(second.TLS.Certificate[0]) }, 25*time.Second, 100*time.Millisecond,
		"the renewed certificate is served without a restart")
	require.Eventually(t, func() bool { return expiry() == float64(second.TLS.Leaf.NotAfter.Unix()) }, 5*time.Second, 50*time.Millisecond,
		"the exported expiry follows the renewal")
}

// Without its certificate files the server is not built: the manager says which directory.
func TestServerNeedsItsCertificate(t *testing.T) {
	_, err := NewServer("127.0.0.1", 0, t.TempDir())
	require.Error(t, err)
}
