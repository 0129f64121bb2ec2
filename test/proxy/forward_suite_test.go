package proxy_test

import (
	"net"
	"os"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/proxyserver"
	"github.com/alauda/harbor-connector/test/testca"
)

// The forward listener, built as the proxy builds it (NewForward from the default options): plain
// HTTP (as HTTPS_PROXY=http://...), interception CA made here, tunnels to public addresses plus
// 127.0.0.7 (an "internal mirror" the tests run), cluster range 10.96.0.0/12, pod identity on.
var (
	forwardAddr  string
	interceptCA  *testca.CA
	forwardProxy *proxyserver.Forward
)

const allowedMirror = "127.0.0.7"

func startForward(mgr ctrl.Manager, handler *proxyserver.Handler, o proxyserver.ForwardOptions) error {
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
	o.InterceptCADir = dir
	o.TunnelAllow = []string{allowedMirror}
	o.ClusterCIDRs = []string{"10.96.0.0/12"}
	// Every address no marked pod has waits the whole PodWait before it is refused: 1 s keeps
	// TestForwardIdentity's refusals short and still covers the 300 ms for which
	// TestForwardIdentityBeforeStatusArrives holds the pod's address back.
	o.PodWait = time.Second
	if forwardProxy, err = proxyserver.NewForward(handler, mgr, o); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	forwardAddr = ln.Addr().String()
	return mgr.Add(&proxyserver.Server{Listener: ln, Handler: forwardProxy, DrainTimeout: 5 * time.Second, Log: ctrl.Log})
}

func testcaNew(name string) (*testca.CA, error) { return testca.New(name) }
