package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Cluster DNS. CoreDNS (test/tools/coredns, built by node-deps.sh with only the plugins the
// Corefile below uses) runs on the host as one of the node's processes, bound to the node IP
// only, and answers for the cluster domain from the API server. The kube-dns Service has no
// selector (there is no CoreDNS pod): its EndpointSlice points at the node IP, and kube-proxy
// sends the pods' queries to ClusterDNSIP there.

const (
	// ClusterDNSIP is the kube-dns Service's cluster IP: the kubelet's clusterDNS. It is in the
	// API server's Service range (10.0.0.0/24), in the low part the API server keeps for fixed
	// addresses (it assigns one there only when the rest of the range is taken).
	ClusterDNSIP = "10.0.0.10"
	// ClusterDomain is the cluster's DNS domain: the kubelet's clusterDomain, CoreDNS's zone.
	ClusterDomain = "cluster.local"

	// kubeDNS names the Service in kube-system that pods' resolv.conf points at, and its
	// EndpointSlice.
	kubeDNS = "kube-dns"
	// kubeDNSManagedBy is the endpointslice.kubernetes.io/managed-by label of kube-dns's
	// EndpointSlice: the node writes it, not the EndpointSlice controller (which leaves
	// Services without a selector alone).
	kubeDNSManagedBy = "harbor-connector-test-node"
	// coreDNSPort is where CoreDNS serves DNS (UDP and TCP) on the node IP.
	coreDNSPort = 53
)

// coreDNSConfig is what a Corefile says: where CoreDNS listens, and how it reaches the API
// server.
type coreDNSConfig struct {
	Bind       string // the only address CoreDNS listens on: DNS, health and ready
	Port       int    // DNS, UDP and TCP
	HealthPort int    // GET /health: 200 while the process runs
	ReadyPort  int    // GET /ready: 200 once the kubernetes plugin has synced with the API server
	Kubeconfig string // a system:masters user of the API server (writeKubeconfig)
	// Hosts are names answered with HostsIP before the cluster domain and the host's resolvers
	// (Options.NodeNames).
	Hosts   []string
	HostsIP string
}

// HostPort is port on the bound address (IPv6 in brackets).
func (c coreDNSConfig) HostPort(port int) string { return net.JoinHostPort(c.Bind, strconv.Itoa(port)) }

// corefile serves the cluster domain and the reverse zones of Service and pod addresses from
// the API server, and forwards every other name to the host's resolvers. The log plugin logs
// only failed lookups (NXDOMAIN, no data, errors): a pod's search path makes several
// queries for every name it resolves. Answers for the cluster domain are not cached (as
// kubeadm's Corefile): the kubernetes plugin answers from its informers anyway, and a cached
// NXDOMAIN would hide a Service a test creates just after something looked it up, for 30s.
var corefile = template.Must(template.New("Corefile").Parse(`.:{{.Port}} {
    bind {{.Bind}}
    errors
    log . {
        class denial error
    }
    health {{.HostPort .HealthPort}}
    ready {{.HostPort .ReadyPort}}
{{- if .Hosts}}
    hosts {
        {{.HostsIP}}{{range .Hosts}} {{.}}{{end}}
        fallthrough
    }
{{- end}}
    kubernetes {{.Domain}} in-addr.arpa ip6.arpa {
        kubeconfig "{{.Kubeconfig}}"
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . /etc/resolv.conf
    cache 30 {
        disable success {{.Domain}}
        disable denial {{.Domain}}
    }
}
`))

// writeCorefile writes c as dir/Corefile.
func writeCorefile(dir string, c coreDNSConfig) (string, error) {
	f, err := os.Create(filepath.Join(dir, "Corefile"))
	if err != nil {
		return "", err
	}
	data := struct {
		coreDNSConfig
		Domain string
	}{c, ClusterDomain}
	if err := corefile.Execute(f, data); err != nil {
		_ = f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}

// coreDNSBinary is CoreDNS in the node's runtime directory (kube.NodeRuntimeDir).
func coreDNSBinary(runtime string) (string, error) {
	bin := filepath.Join(runtime, "bin", "coredns")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no coredns in %s: run make node-deps (test/tools/node-deps.sh)", filepath.Dir(bin))
	}
	return bin, nil
}

// startCoreDNS runs CoreDNS on the node IP, port 53, once the API server is up, and creates the
// kube-dns Service (ClusterDNSIP) pointing at it.
func (n *Node) startCoreDNS(ctx context.Context) error {
	if err := n.runCoreDNS(ctx, n.IP, coreDNSPort); err != nil {
		return err
	}
	return n.createKubeDNS(ctx, n.IP, coreDNSPort)
}

// runCoreDNS starts CoreDNS serving DNS on bind:port only, and waits until it is ready.
func (n *Node) runCoreDNS(ctx context.Context, bind string, port int) error {
	bin, err := coreDNSBinary(n.containerd.Runtime)
	if err != nil {
		return err
	}
	confDir := filepath.Join(n.Dir, "config")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	kubeconfig, err := writeKubeconfig(n.Env, confDir, "system:coredns")
	if err != nil {
		return err
	}
	// CoreDNS's own default ports, unless something already listens there.
	ports, err := listenPorts(bind, 8080, 8181)
	if err != nil {
		return err
	}
	c := coreDNSConfig{Bind: bind, Port: port, HealthPort: ports[0], ReadyPort: ports[1], Kubeconfig: kubeconfig, Hosts: n.opts.NodeNames, HostsIP: n.IP}
	conf, err := writeCorefile(confDir, c)
	if err != nil {
		return fmt.Errorf("writing the Corefile: %w", err)
	}
	// The Corefile's path names the node's directory, so a crashed run's CoreDNS is found and
	// killed with the other components (Stop's leftover processes, reclaim.go).
	if _, err := n.startProcess("coredns", bin, "-conf", conf); err != nil {
		return err
	}
	// Ready once the kubernetes plugin has listed Services and EndpointSlices...
	if err := n.waitHealthy(ctx, "coredns", "http://"+c.HostPort(c.ReadyPort)+"/ready"); err != nil {
		return err
	}
	// ... and once its DNS listener answers: /ready can answer before the UDP listener is up
	// (a query then was refused with ICMP port unreachable on a loaded machine).
	return waitDNSAnswers(ctx, net.JoinHostPort(bind, strconv.Itoa(port)))
}

// waitDNSAnswers polls addr with a UDP DNS query until any DNS answer comes back (a name or
// NXDOMAIN), for up to 30 s.
func waitDNSAnswers(ctx context.Context, addr string) error {
	dialer := &net.Dialer{Timeout: time.Second}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, "udp", addr)
	}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := r.LookupHost(ctx, "kubernetes.default.svc."+ClusterDomain+".")
		var dnsErr *net.DNSError
		if err == nil || errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CoreDNS on %s reports ready but does not answer DNS: %v", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createKubeDNS creates the kube-dns Service, with cluster IP ClusterDNSIP and no selector, and
// the EndpointSlice that points it at CoreDNS on addr:port. The API server refuses loopback
// addresses in an EndpointSlice: addr is the node IP.
func (n *Node) createKubeDNS(ctx context.Context, addr string, port int) error {
	target := intstr.FromInt32(int32(port))
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: kubeDNS, Namespace: metav1.NamespaceSystem},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: ClusterDNSIP,
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: target},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: target},
			},
		},
	}
	addressType := discoveryv1.AddressTypeIPv4
	if ip := net.ParseIP(addr); ip != nil && ip.To4() == nil {
		addressType = discoveryv1.AddressTypeIPv6
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      kubeDNS,
			Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: kubeDNS,
				discoveryv1.LabelManagedBy:   kubeDNSManagedBy,
			},
		},
		AddressType: addressType,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("dns"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolUDP)},
			{Name: ptr.To("dns-tcp"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)},
		},
	}
	// The API server creates kube-system shortly after it starts serving.
	var notYet error
	err := n.poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		_, err := n.Clientset.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		if isNotFound(err) {
			notYet = err
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		if notYet != nil {
			err = fmt.Errorf("%w (last: %v)", err, notYet)
		}
		return fmt.Errorf("creating Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	if _, err := n.Clientset.DiscoveryV1().EndpointSlices(slice.Namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating EndpointSlice %s/%s: %w", slice.Namespace, slice.Name, err)
	}
	return nil
}
