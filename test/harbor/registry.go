package testharbor

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"

	// The registry's token access controller and filesystem storage, as Harbor configures them.
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// registry is the real CNCF distribution registry Harbor runs behind its core, in process,
// configured for token auth against this server's token service.
type registry struct {
	app      *handlers.App
	server   *http.Server
	listener net.Listener
	url      string
}

func startRegistry(dir, realm string, tokenCertPEM []byte) (*registry, error) {
	bundle := filepath.Join(dir, "token-ca.crt")
	if err := os.WriteFile(bundle, tokenCertPEM, 0o600); err != nil {
		return nil, err
	}
	storage := filepath.Join(dir, "storage")
	yaml := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
auth:
  token:
    realm: %q
    service: %q
    issuer: %q
    rootcertbundle: %q
http:
  secret: harbor-connector-test-registry
`, storage, realm, tokenService, tokenIssuer, bundle)
	cfg, err := configuration.Parse(strings.NewReader(yaml))
	if err != nil {
		return nil, fmt.Errorf("registry configuration: %w", err)
	}
	quietRegistryLogs()
	app := handlers.NewApp(context.Background(), cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: app}
	go func() { _ = srv.Serve(ln) }()
	return &registry{app: app, server: srv, listener: ln, url: "http://" + ln.Addr().String()}, nil
}

func (r *registry) close() {
	_ = r.server.Close()
	_ = r.app.Shutdown()
}

// serverLog keeps handshake errors (expected in negative TLS tests) out of test output unless
// TEST_HARBOR_VERBOSE is set.
func serverLog() *log.Logger {
	if os.Getenv("TEST_HARBOR_VERBOSE") != "" {
		return nil
	}
	return log.New(io.Discard, "", 0)
}

// quietRegistryLogs keeps the registry's per-request logrus lines out of test output; errors
// still print.
func quietRegistryLogs() {
	logrus.SetLevel(logrus.ErrorLevel)
	if os.Getenv("TEST_HARBOR_VERBOSE") == "" {
		logrus.SetOutput(io.Discard)
	}
}
