package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/test/testca"
)

// TrustNamespace is where trust-manager reads Bundle sources: the product's namespace, as its
// install asks (README "Install on a cluster").
const TrustNamespace = "connectors-system"

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
	kubeconfig, err := writeKubeconfig(n.Env, filepath.Join(n.Dir, "config"), "system:trust-manager")
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
	webhookPort, readyPort := strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
	if _, err := n.startProcess("trust-manager", bin, "--kubeconfig="+kubeconfig,
		"--trust-namespace="+TrustNamespace, "--leader-elect=false",
		"--webhook-host=127.0.0.1", "--webhook-port="+webhookPort, "--webhook-certificate-dir="+dir,
		"--readiness-probe-port="+readyPort, "--metrics-port=0", "--log-level=2"); err != nil {
		return err
	}
	return n.waitHealthy(ctx, "trust-manager", "http://"+net.JoinHostPort("127.0.0.1", readyPort)+"/readyz")
}

// waitHealthy waits until a component's health URL answers 200, failing with its log's end.
func (n *Node) waitHealthy(ctx context.Context, name, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	err := n.poll(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		resp, err := client.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s at %s: %w; last lines of its log:\n%s", name, url, err, tail(n.procs[name].log, 30))
	}
	return nil
}
