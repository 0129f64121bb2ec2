package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/test/testca"
)

// startTrustManager runs trust-manager (built from its module by test/tools/trust-manager.sh)
// with the flag the product's install asks for. Its validating webhook serves on loopback with a
// test certificate and is not registered: the test bed checks the product, not trust-manager's
// admission (test/trust does that).
func (n *Node) startTrustManager(ctx context.Context) error {
	bin, err := kube.TrustManagerBinary()
	if err != nil {
		return fmt.Errorf("%w (build it with test/tools/trust-manager.sh, which make e2e runs)", err)
	}
	dir := filepath.Join(n.Dir, "trust-manager")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	kubeconfig, err := n.Kubeconfig("system:trust-manager")
	if err != nil {
		return err
	}
	ca, err := testca.New("e2e-node trust-manager webhook CA")
	if err != nil {
		return err
	}
	leaf, err := ca.Issue("127.0.0.1")
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	ports, err := listenPorts("127.0.0.1", 0, 0)
	if err != nil {
		return err
	}
	if _, err := n.startProcess("trust-manager", bin, kube.TrustManagerArgs(kubeconfig, "127.0.0.1", ports[0], dir, ports[1])...); err != nil {
		return err
	}
	return n.waitHealthy(ctx, "trust-manager", "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))+"/readyz")
}
