package node

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/alauda/harbor-connector/test/testca"
)

// The cluster's Service range and the two fixed addresses in it: the kubernetes Service (the
// first address, which the API server allocates itself) and cluster DNS (kubeadm's choice).
const (
	ServiceCIDR  = "10.0.0.0/24"
	APIServiceIP = "10.0.0.1"
)

// apiServerNames are the names a pod's client may use for the API server: the kubernetes
// Service's address and DNS names (in-cluster config dials KUBERNETES_SERVICE_HOST, an IP), the
// node IP for host processes, and localhost as envtest's own certificate has it.
func apiServerNames(nodeIP string) []string {
	return []string{
		"localhost", "127.0.0.1", nodeIP, APIServiceIP,
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
	}
}

// writeAPIServerCerts writes the serving certificate and the service-account signing pair into
// the API server's certificate directory before envtest starts it, and returns the serving CA.
// envtest makes its own only when apiserver.crt is absent, for "localhost" and the bind address:
// pods need the kubernetes Service's names too. The signing pair must come with it (envtest
// writes both or neither).
func writeAPIServerCerts(certDir, nodeIP string) ([]byte, error) {
	ca, err := testca.New("e2e-node kube-apiserver CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(apiServerNames(nodeIP)...)
	if err != nil {
		return nil, err
	}
	signer, err := testca.New("e2e-node service-account signer")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"apiserver.crt": leaf.CertPEM, "apiserver.key": leaf.KeyPEM,
		"sa-signer.crt": signer.CertPEM, "sa-signer.key": signer.KeyPEM(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	if net.ParseIP(nodeIP) == nil {
		return nil, fmt.Errorf("node IP %q is not an address", nodeIP)
	}
	return ca.CertPEM, nil
}
