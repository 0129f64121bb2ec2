package proxyserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/testca"
)

// A renewed certificate (cert-manager rewrites the Secret's files) is served without a restart,
// and the exported expiry is the served certificate's.
func TestServerReloadsRenewedCertificate(t *testing.T) {
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &Server{Listener: ln, Handler: http.NotFoundHandler(), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), Log: logr.Discard()}
	go func() { _ = srv.Start(ctx) }()

	served := func() []byte { return testca.Served(ln.Addr().String(), ca.Pool()) }
	require.Eventually(t, func() bool { return string(served()) == string(first.TLS.Certificate[0]) }, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, float64(first.TLS.Leaf.NotAfter.Unix()), testutil.ToFloat64(certificateExpiry), "the served certificate's expiry is exported")
	second := write(48 * time.Hour)
	// controller-runtime's certwatcher adds its file watches in the background after it starts
	// serving, and re-reads the files every 10 s besides: a renewal written before the watches
	// exist (as here, under load) is picked up by that poll. The window covers one poll; a
	// window of exactly 10 s failed CI once.
	require.Eventually(t, func() bool { return string(served()) == string(second.TLS.Certificate[0]) }, 25*time.Second, 100*time.Millisecond,
		"the renewed certificate is served without a restart")
	require.Eventually(t, func() bool { return float64(second.TLS.Leaf.NotAfter.Unix()) == testutil.ToFloat64(certificateExpiry) }, 5*time.Second, 50*time.Millisecond,
		"the exported expiry follows the renewal")
}

// Shutdown stops accepting but lets an in-flight transfer finish.
func TestServerDrainsInFlightTransfers(t *testing.T) {
	started := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		for i := 0; i < 10; i++ {
			_, _ = w.Write(make([]byte, 1024))
			http.NewResponseController(w).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&Server{Listener: ln, Handler: handler, DrainTimeout: 10 * time.Second, Log: logr.Discard()}).Start(ctx)
	}()

	resp, err := http.Get("http://" + ln.Addr().String() + "/blob")
	require.NoError(t, err)
	<-started
	cancel() // shutdown begins while the body is still streaming
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Len(t, body, 10*1024, "the in-flight transfer completed")
	require.NoError(t, <-done)
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	assert.Error(t, err, "no longer accepting")
}

func TestLimiter(t *testing.T) {
	l := &Limiter{PerIdentity: 2, PerConnector: 3}
	r1, ok := l.Acquire("a/sa", "ns/c")
	require.True(t, ok)
	r2, ok := l.Acquire("a/sa", "ns/c")
	require.True(t, ok)
	_, ok = l.Acquire("a/sa", "ns/c")
	assert.False(t, ok, "per-identity limit")
	r3, ok := l.Acquire("b/sa", "ns/c")
	require.True(t, ok)
	_, ok = l.Acquire("c/sa", "ns/c")
	assert.False(t, ok, "per-connector limit")
	_, ok = l.Acquire("c/sa", "ns/other")
	assert.True(t, ok, "other connectors are unaffected")
	r1()
	r1() // releasing twice is harmless
	_, ok = l.Acquire("c/sa", "ns/c")
	assert.True(t, ok)
	r2()
	r3()
}
