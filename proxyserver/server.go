package proxyserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// Server runs one listener of the proxy. Blob transfers have no whole-request timeouts (stall
// timers in the handler end stuck ones); shutdown stops accepting and drains in-flight
// transfers for up to DrainTimeout.
type Server struct {
	Addr    string
	Handler http.Handler
	// CertFile and KeyFile serve HTTPS, reloaded when the files change (cert-manager renewal);
	// the expiry of the certificate served is connectors_proxy_certificate_expiration_timestamp_seconds.
	// Empty serves plain HTTP (development, and the node-local listener).
	CertFile, KeyFile string
	DrainTimeout      time.Duration
	Log               logr.Logger
	// Listener, when set, is used instead of listening on Addr (tests).
	Listener net.Listener
}

// Start implements manager.Runnable: it serves until ctx ends, then drains.
func (s *Server) Start(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		// ReadTimeout and WriteTimeout stay 0: multi-GB layers take longer than any fixed bound.
	}
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Addr); err != nil {
			return err
		}
	}
	if s.CertFile != "" {
		watcher, err := certwatcher.New(s.CertFile, s.KeyFile)
		if err != nil {
			return err
		}
		watcher.RegisterCallback(func(c tls.Certificate) {
			if c.Leaf != nil { // tls.X509KeyPair fills it
				certificateExpiry.Set(float64(c.Leaf.NotAfter.Unix()))
			}
		})
		go func() { _ = watcher.Start(ctx) }()
		// HTTP/1.1 only: one HTTP/2 stream is held to its flow-control window, and Go's
		// HTTP/2 measured about half the blob throughput of HTTP/1.1.
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: watcher.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.Log.Info("serving", "address", ln.Addr().String(), "tls", s.CertFile != "")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	drain := s.DrainTimeout
	if drain == 0 {
		drain = 5 * time.Minute
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	s.Log.Info("draining in-flight transfers", "timeout", drain.String())
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every replica serves.
func (s *Server) NeedLeaderElection() bool { return false }

// Routes serves the registry API under /v2/ and the readiness and liveness endpoints, which the
// Connector controller's ProxyReady check calls on the same address workloads use.
func Routes(registry http.Handler, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v2/", registry)
	mux.Handle("/v2", registry)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "informer caches not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return Canonical(mux)
}
