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
	_ "github.com/distribution/distribution/v3/registry/storage/driver/middleware/redirect"
)

// registry is the real CNCF distribution registry Harbor runs behind its core, in process,
// configured for token auth against this server's token service.
type registry struct {
	app          *handlers.App
	server       *http.Server
	listener     net.Listener
	url          string
	redirectBase string
}

// startRegistry starts the registry on addr (default a free loopback port). redirectBase, when
// set, makes it redirect blob downloads there (distribution's redirect storage middleware).
func startRegistry(dir, realm string, tokenCertPEM []byte, redirectBase, addr string) (*registry, error) {
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
	if redirectBase != "" {
		yaml += fmt.Sprintf(`middleware:
  storage:
  - name: redirect
    options:
      baseurl: %q
`, redirectBase)
	}
	cfg, err := configuration.Parse(strings.NewReader(yaml))
	if err != nil {
		return nil, fmt.Errorf("registry configuration: %w", err)
	}
	quietRegistryLogs()
	app := handlers.NewApp(context.Background(), cfg)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: app, ErrorLog: serverLog()}
	go func() { _ = srv.Serve(ln) }()
	return &registry{app: app, server: srv, listener: ln, url: "http://" + ln.Addr().String(), redirectBase: redirectBase}, nil
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
