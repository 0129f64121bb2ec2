package node

import (
	"context"
	"net"
	"path/filepath"
)

// kube-proxy's health and metrics ports, on the node IP only.
const kubeProxyHealthzPort, kubeProxyMetricsPort = "10256", "10249"

// startKubeProxy runs kube-proxy in iptables mode, so Service addresses (the kubernetes Service,
// cluster DNS, the product's Services) route from pods and from the host. Its KUBE-* chains are
// removed on Stop with the kubelet's (iptables.go). It must change no host setting the node does
// not put back: the conntrack sysctls stay as they are and localhost NodePorts stay off (they
// set route_localnet).
func (n *Node) startKubeProxy(ctx context.Context, assets string) error {
	kubeconfig, err := n.Kubeconfig("system:kube-proxy")
	if err != nil {
		return err
	}
	healthz := net.JoinHostPort(n.IP, kubeProxyHealthzPort)
	if _, err := n.startProcess("kube-proxy", filepath.Join(assets, "kube-proxy"),
		"--kubeconfig="+kubeconfig,
		"--proxy-mode=iptables",
		"--hostname-override="+n.Name,
		"--bind-address="+n.IP,
		"--cluster-cidr="+n.opts.PodCIDR,
		"--healthz-bind-address="+healthz,
		"--metrics-bind-address="+net.JoinHostPort(n.IP, kubeProxyMetricsPort),
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--iptables-localhost-nodeports=false",
		"--v=2",
	); err != nil {
		return err
	}
	// Healthy once it has synced the Services and programmed its rules.
	return n.waitHealthy(ctx, "kube-proxy", "http://"+healthz+"/healthz")
}
