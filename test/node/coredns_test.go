//go:build e2e

package node

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/alauda/harbor-connector/test/kube"
)

// coreDNSTestIP is where the test's CoreDNS listens instead of the bridge address.
const coreDNSTestIP = "127.0.0.10"

// TestCoreDNSResolvesServices runs the node's CoreDNS step against an envtest API server, with
// CoreDNS on a loopback address and an unprivileged port instead of the node IP and 53 (no real
// node, no root): the kube-dns Service and EndpointSlice are accepted, and Services resolve by
// name and address through CoreDNS itself. It is tagged e2e because the binary comes from
// make node-deps, which make e2e runs first.
func TestCoreDNSResolvesServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runtime, err := kube.NodeRuntimeDir()
	require.NoError(t, err)
	// Fails, never skips, without the binary: the message names make node-deps.
	_, err = coreDNSBinary(runtime)
	require.NoError(t, err)

	env, err := kube.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	clientset, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)

	dir := t.TempDir()
	n := &Node{
		Env: env, Config: env.Config, Clientset: clientset,
		IP: "10.88.0.1", Dir: dir,
		logf: t.Logf, logDir: filepath.Join(dir, "logs"),
		containerd: newContainerdPaths(dir, runtime),
		procs:      map[string]*process{},
		opts:       Options{NodeNames: []string{"harbor.e2e.test"}},
	}
	require.NoError(t, os.MkdirAll(n.logDir, 0o755))
	port := freeDNSPort(t, coreDNSTestIP)
	err = n.runCoreDNS(ctx, coreDNSTestIP, port)
	t.Cleanup(func() { assert.NoError(t, n.stopProcess("coredns")) })
	require.NoError(t, err)
	// As on the node: the Service points at the node IP, where kube-proxy would send queries.
	require.NoError(t, n.createKubeDNS(ctx, n.IP, coreDNSPort))

	svc, err := clientset.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, ClusterDNSIP, svc.Spec.ClusterIP)
	assert.Empty(t, svc.Spec.Selector)
	slice, err := clientset.DiscoveryV1().EndpointSlices("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "kube-dns", slice.Labels["kubernetes.io/service-name"])
	assert.Equal(t, kubeDNSManagedBy, slice.Labels["endpointslice.kubernetes.io/managed-by"])
	require.Len(t, slice.Endpoints, 1)
	assert.Equal(t, []string{n.IP}, slice.Endpoints[0].Addresses)
	var ports []string
	for _, p := range slice.Ports {
		ports = append(ports, *p.Name+" "+string(*p.Protocol)+" "+strconv.Itoa(int(*p.Port)))
	}
	assert.ElementsMatch(t, []string{"dns UDP 53", "dns-tcp TCP 53"}, ports)

	// Go's own resolver, asking CoreDNS only; the trailing dots keep the host's search path out.
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, net.JoinHostPort(coreDNSTestIP, strconv.Itoa(port)))
	}}
	webName := "web.dns-test.svc." + ClusterDomain + "."

	_, err = clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "dns-test"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	// NXDOMAIN while the Service does not exist. Go's resolver reports NXDOMAIN (or an empty
	// answer) as not found; SERVFAIL or REFUSED would be a temporary or another error.
	_, err = r.LookupHost(ctx, webName)
	var dnsErr *net.DNSError
	require.True(t, errors.As(err, &dnsErr), "want a DNS error for %s, got %v", webName, err)
	assert.True(t, dnsErr.IsNotFound, "want NXDOMAIN for a Service that does not exist, got %v", err)

	web, err := clientset.CoreV1().Services("dns-test").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	// CoreDNS learns of it from its watch, well before a cached NXDOMAIN (30s) would expire.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		addrs, err := r.LookupHost(ctx, webName)
		if assert.NoError(c, err) {
			assert.Equal(c, []string{web.Spec.ClusterIP}, addrs)
		}
	}, 10*time.Second, 200*time.Millisecond, "resolving %s after creating the Service", webName)

	addrs, err := r.LookupHost(ctx, "kube-dns.kube-system.svc."+ClusterDomain+".")
	require.NoError(t, err)
	assert.Equal(t, []string{ClusterDNSIP}, addrs)

	_, srvs, err := r.LookupSRV(ctx, "dns", "udp", "kube-dns.kube-system.svc."+ClusterDomain+".")
	require.NoError(t, err)
	require.Len(t, srvs, 1)
	assert.Equal(t, "kube-dns.kube-system.svc."+ClusterDomain+".", srvs[0].Target)
	assert.EqualValues(t, 53, srvs[0].Port)

	// A host the node serves for the cluster (the e2e suite's Harbor) resolves to the node IP.
	addrs, err = r.LookupHost(ctx, "harbor.e2e.test.")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.88.0.1"}, addrs)

	names, err := r.LookupAddr(ctx, ClusterDNSIP)
	require.NoError(t, err, "reverse lookup of the kube-dns cluster IP (in-addr.arpa zone)")
	assert.Equal(t, []string{"kube-dns.kube-system.svc." + ClusterDomain + "."}, names)
}

// freeDNSPort finds a port free for both UDP and TCP on ip.
func freeDNSPort(t *testing.T, ip string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return port
		}
	}
	t.Fatalf("no port free for both UDP and TCP on %s", ip)
	return 0
}
