package node

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// Kubeconfig writes a kubeconfig for a cluster-admin user of that name into the node's
// configuration directory and returns its path (for kubectl, make deploy, a product process).
func (n *Node) Kubeconfig(user string) (string, error) {
	return writeKubeconfig(n.Env, filepath.Join(n.Dir, "config"), user)
}

// writeKubeconfig writes a kubeconfig for a client-certificate user of the envtest API server.
// Every component is in system:masters: this is a throwaway single-node cluster, and RBAC for
// the node's own components is not what the suite tests.
func writeKubeconfig(env *envtest.Environment, dir, user string) (string, error) {
	u, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("creating API server user %s: %w", user, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, user+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// controllers the controller-manager runs: everything on by default except node CIDR
// allocation (the bridge's host-local IPAM assigns pod addresses). The node lifecycle controller
// stays: it removes the node.kubernetes.io/not-ready taint every node is registered with, without
// which nothing schedules. The cloud controllers (service-lb, node-route, cloud-node-lifecycle)
// need no mention: up to 1.36 they do nothing without a cloud provider, and 1.37 no longer knows
// their names (naming them fails its start).
const controllers = "*,-node-ipam-controller"

func controllerManagerArgs(kubeconfig, saKey, rootCA string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + controllers,
		// Signs the legacy token secrets and publishes kube-root-ca.crt, which every pod's
		// projected service-account volume mounts.
		"--service-account-private-key-file=" + saKey,
		"--root-ca-file=" + rootCA,
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--secure-port=0", // no health endpoint needed: Start waits for what it needs instead
		"--v=2",
	}
}

func writeSchedulerConfig(dir, kubeconfig string) (string, error) {
	conf := fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
leaderElection:
  leaderElect: false
`, kubeconfig)
	path := filepath.Join(dir, "scheduler.yaml")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// kubeletConfig is the kubelet's configuration for this host; the TESTING.md "A real node" facts
// explain the cgroup and iptables settings.
func kubeletConfig(n *Node, cgroupRoot string, port int32) *kubeletv1beta1.KubeletConfiguration {
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: kubeletv1beta1.SchemeGroupVersion.String(), Kind: "KubeletConfiguration"},
		// Serve only on the node IP: the API server reaches the kubelet there for logs and exec.
		Address:      n.IP,
		Port:         port,
		ReadOnlyPort: 0,
		HealthzPort:  ptr.To[int32](0),
		// The API server calls the kubelet without a client certificate (envtest configures
		// none), so anonymous requests must be allowed to fetch logs.
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(true)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(false)},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow},

		ContainerRuntimeEndpoint: "unix://" + n.ContainerdSocket,
		// cgroup v1 without systemd as PID 1.
		CgroupDriver: "cgroupfs",
		FailCgroupV1: ptr.To(false),
		// Pods go under a cgroup the node owns, removed on Stop.
		CgroupRoot:    cgroupRoot,
		CgroupsPerQOS: ptr.To(true),
		// No kube-proxy, and the node must not leave NAT or filter rules on the host.
		MakeIPTablesUtilChains: ptr.To(false),
		FailSwapOn:             ptr.To(false),
		ResolverConfig:         ptr.To("/etc/resolv.conf"),
		// Cluster DNS: CoreDNS on the node, behind the kube-dns Service (coredns.go).
		ClusterDNS:    []string{ClusterDNSIP},
		ClusterDomain: ClusterDomain,
		PodLogsDir:    filepath.Join(n.Dir, "pod-logs"),

		// A shared CI disk may be nearly full: never evict test pods or garbage-collect the
		// images the suite imported (they cannot be pulled back).
		EvictionHard: map[string]string{
			"memory.available":  "1Mi",
			"nodefs.available":  "1%",
			"nodefs.inodesFree": "1%",
			"imagefs.available": "1%",
		},
		ImageGCHighThresholdPercent: ptr.To[int32](100),
		ImageGCLowThresholdPercent:  ptr.To[int32](99),
		RegisterNode:                ptr.To(true),
		// Static pods, read every 2 s (default 20 s) so a test sees one start promptly.
		StaticPodPath:      n.StaticPodDir,
		FileCheckFrequency: metav1.Duration{Duration: 2 * time.Second},
	}
}

func writeKubeletConfig(path string, c *kubeletv1beta1.KubeletConfiguration) error {
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func kubeletArgs(n *Node, config, kubeconfig string) []string {
	return []string{
		"--config=" + config,
		"--kubeconfig=" + kubeconfig,
		"--root-dir=" + n.KubeletRoot,
		// Its default is /var/lib/kubelet/pki whatever the root directory.
		"--cert-dir=" + filepath.Join(n.KubeletRoot, "pki"),
		"--hostname-override=" + n.Name,
		"--node-ip=" + n.IP,
		"--v=2",
	}
}

// listenPorts returns, for each preferred port, that port on ip if nothing listens there yet,
// otherwise one the kernel picks. All stay open until every port is chosen, so none repeats.
func listenPorts(ip string, preferred ...int) ([]int, error) {
	var ports []int
	for _, p := range preferred {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			l, err = net.Listen("tcp", net.JoinHostPort(ip, "0"))
			if err != nil {
				return nil, fmt.Errorf("finding a free port on %s: %w", ip, err)
			}
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
