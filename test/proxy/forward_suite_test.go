package proxy_test

import (
	"net"
	"os"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver"
	"github.com/alauda/harbor-connector/proxyserver/intercept"
	"github.com/alauda/harbor-connector/test/testca"
)

// The forward listener: plain HTTP (as HTTPS_PROXY=http://...), interception CA made here,
// tunnels to public addresses plus 127.0.0.7 (an "internal mirror" the tests run), cluster range
// 10.96.0.0/12, pod identity on.
var (
	forwardAddr  string
	interceptCA  *testca.CA
	forwardProxy *proxyserver.Forward
)

const allowedMirror = "127.0.0.7"

func startForward(mgr ctrl.Manager, handler *proxyserver.Handler) error {
	var err error
	if interceptCA, err = testca.New("connectors interception test CA"); err != nil {
		return err
	}
	dir := filepath.Join(workDir, "intercept-ca")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), interceptCA.CertPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), interceptCA.KeyPEM(), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(workDir, "intercept-ca.crt"), interceptCA.CertPEM, 0o644); err != nil {
		return err
	}
	_, cluster, _ := net.ParseCIDR("10.96.0.0/12")
	forwardProxy = &proxyserver.Forward{
		Handler:   handler,
		Authority: &intercept.Authority{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")},
		Tunnels:   policies.TunnelPolicy{Mode: policies.TunnelPublic, Allow: []string{allowedMirror}, ClusterCIDRs: []*net.IPNet{cluster}},
		Pods:      &proxyserver.PodsByIP{Reader: mgr.GetClient(), Live: mgr.GetAPIReader(), Wait: time.Second},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	forwardAddr = ln.Addr().String()
	return mgr.Add(&proxyserver.Server{Listener: ln, Handler: forwardProxy, DrainTimeout: 5 * time.Second, Log: ctrl.Log})
}

func testcaNew(name string) (*testca.CA, error) { return testca.New(name) }
