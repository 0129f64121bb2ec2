package node

import (
	"context"
	"path/filepath"
)

// startCertManager runs cert-manager's own controllers and cainjector (./test/tools/cert-manager
// wires them from the cert-manager module, whose commands the module proxy does not serve) with
// the node's other add-ons. It has no health endpoint: what a caller waits for is its work, a
// Certificate Ready or a caBundle filled.
func (n *Node) startCertManager(ctx context.Context) error {
	bin := filepath.Join(n.Dir, "bin", "cert-manager")
	if err := BuildStatic(ctx, "./test/tools/cert-manager", bin); err != nil {
		return err
	}
	kubeconfig, err := n.Kubeconfig("system:cert-manager")
	if err != nil {
		return err
	}
	_, err = n.startProcess("cert-manager", bin, "-kubeconfig", kubeconfig, "-v", "2")
	return err
}
