// Package node brings up a real single-node Kubernetes cluster on this machine for the
// end-to-end suite: envtest's kube-apiserver and etcd, kube-controller-manager, kube-scheduler,
// a kubelet and its own containerd, with pods on a host-only bridge. Stop tears all of it down
// and leaves the host as it found it (TESTING.md "A real node (kubelet + containerd) for the
// end-to-end suite" lists the host facts the code works around).
//
// It needs root and what `test/tools/node-deps.sh` installs: containerd 2.x, runc (with
// seccomp) and the CNI plugins built into the project cache (kube.NodeRuntimeDir), and kubelet,
// kube-controller-manager and kube-scheduler at the test bed's Kubernetes version. The host's own
// containerd or runc, if any, is never used. One node runs per bridge name at a time.
package node

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/alauda/harbor-connector/test/kube"
)

// PauseImage is the sandbox image the node builds from ./test/node/pause and imports.
const PauseImage = "localhost/e2e/pause:1"

// Options configure a node. The zero value works.
type Options struct {
	Bridge     string // host-only bridge for pods; default "hce2e0"
	BridgeCIDR string // host address on the bridge, which is the node IP; default "10.88.0.1/24"
	PodCIDR    string // pod addresses (host-local IPAM, the bridge address excluded); default "10.88.0.0/24"

	// KubeOptions are passed to kube.Start after the node's own API server flags (for example
	// kube.WithWebhooks).
	KubeOptions []kube.Option

	// RegistryCAs maps a registry host[:port] to a PEM CA file; containerd trusts that CA for
	// that registry (a certs.d hosts.toml), so the kubelet pulls from it over TLS.
	RegistryCAs map[string]string

	// NodeNames are host names cluster DNS answers with the node IP: services the host runs
	// for the cluster (the e2e suite's Harbor), as a company's DNS names them.
	NodeNames []string

	// CertManager runs cert-manager's controllers and cainjector (test/certmanager), and
	// TrustManager runs trust-manager, each with its CRDs, as a cluster that has them installed.
	CertManager, TrustManager bool

	// CredentialProvider, when set, configures the kubelet with that image credential provider
	// exec plugin, as node bootstrap does (README "Per-pod pulls").
	CredentialProvider *CredentialProvider

	// Log receives progress and phase durations; default log.Printf.
	Log func(format string, args ...any)
}

// Node is a running single-node cluster.
type Node struct {
	Env       *envtest.Environment
	Config    *rest.Config // cluster admin
	Client    client.Client
	Clientset kubernetes.Interface

	Name string // the Node object's name
	IP   string // node IP: the host's address on the bridge
	Dir  string // scratch root: configuration, state and logs (logs/<component>.log)

	// KubeletRoot is the kubelet's --root-dir. CSI drivers register in
	// KubeletRoot/plugins_registry and keep their sockets under KubeletRoot/plugins.
	KubeletRoot      string
	ContainerdSocket string
	// StaticPodDir is the kubelet's staticPodPath: a manifest written there runs as a static
	// pod, which never passes admission (its mirror pod may be refused; the pod runs anyway).
	StaticPodDir string

	opts       Options
	logf       func(format string, args ...any)
	logDir     string
	cgroupRoot string
	containerd containerdPaths

	// What Start changed on the host, for Stop to undo. Each is set only once done.
	bridge   bool
	sysctls  map[string]string
	iptables map[string]ruleset
	cgroup   bool
	hostDirs map[string]bool // global directories that did not exist before Start
	// tempDirs are directories envtest made beside Dir in the temp directory (its webhook
	// serving certificates): Env.Stop removes them, the next Start after a crash from the record.
	tempDirs []string
	procs    map[string]*process
	// envtest runs the API server; its output goes here.
	apiserverLog *os.File
	keepLogs     bool     // Start failed: keep the component logs after Stop
	lock         *os.File // the bridge's lock (reclaim.go), held until Stop is done
	stopOnce     sync.Once
	stopErr      error
}

const nodeName = "e2e-node"

// Start brings the node up and waits until the Node is Ready and the default ServiceAccount
// exists. On failure it stops whatever it started and returns an error naming the step (and,
// for a component, the end of its log).
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.Bridge == "" {
		opts.Bridge = "hce2e0"
	}
	if opts.BridgeCIDR == "" {
		opts.BridgeCIDR = "10.88.0.1/24"
	}
	if opts.PodCIDR == "" {
		opts.PodCIDR = "10.88.0.0/24"
	}
	if opts.Log == nil {
		opts.Log = log.Printf
	}
	ip, _, err := net.ParseCIDR(opts.BridgeCIDR)
	if err != nil {
		return nil, fmt.Errorf("Options.BridgeCIDR: %w", err)
	}
	lock, err := lockBridge(opts.Bridge)
	if err != nil {
		return nil, err
	}
	if err := reclaimCrashed(opts.Bridge, opts.Log); err != nil {
		unlockBridge(lock)
		return nil, err
	}
	runtime, err := kube.NodeRuntimeDir()
	if err != nil {
		unlockBridge(lock)
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hce2e-node-")
	if err != nil {
		unlockBridge(lock)
		return nil, err
	}
	n := &Node{
		Name:        nodeName,
		IP:          ip.String(),
		Dir:         dir,
		KubeletRoot: filepath.Join(dir, "kubelet"), StaticPodDir: filepath.Join(dir, "static-pods"),
		opts:       opts,
		logf:       opts.Log,
		logDir:     filepath.Join(dir, "logs"),
		cgroupRoot: "/" + opts.Bridge,
		containerd: newContainerdPaths(dir, runtime),
		procs:      map[string]*process{},
		lock:       lock,
	}
	n.ContainerdSocket = n.containerd.Socket
	if err := n.start(ctx); err != nil {
		n.logf("node: start failed, stopping what was started")
		n.keepLogs = true
		if stopErr := n.Stop(); stopErr != nil {
			err = fmt.Errorf("%w\n(and stopping the partial node: %v)", err, stopErr)
		}
		return nil, err
	}
	return n, nil
}

func (n *Node) start(ctx context.Context) error {
	total := time.Now()
	var assets string
	type step struct {
		name string
		fn   func(context.Context) error
	}
	steps := []step{
		{"preflight", func(ctx context.Context) (err error) { assets, err = n.preflight(ctx); return err }},
		{"bridge", n.setUpNetwork},
		{"kube-apiserver", n.startAPIServer},
		{"coredns", n.startCoreDNS},
		{"containerd", n.startContainerd},
		{"pause image", n.importPause},
		{"controller-manager and scheduler", func(ctx context.Context) error { return n.startControlPlane(ctx, assets) }},
		{"kubelet", func(ctx context.Context) error { return n.startKubelet(ctx, assets) }},
		{"node ready", n.waitReady},
		{"kube-proxy", func(ctx context.Context) error { return n.startKubeProxy(ctx, assets) }},
	}
	if n.opts.CertManager {
		steps = append(steps, step{"cert-manager", n.startCertManager})
	}
	if n.opts.TrustManager {
		steps = append(steps, step{"trust-manager", n.startTrustManager})
	}
	for _, s := range steps {
		began := time.Now()
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("node %s: %w", s.name, err)
		}
		n.logf("node: %-33s %6.1fs", s.name, time.Since(began).Seconds())
	}
	n.logf("node: %-33s %6.1fs (dir %s)", "started", time.Since(total).Seconds(), n.Dir)
	return nil
}

// preflight checks what the node needs before it changes anything on the host, and returns the
// Kubernetes assets directory.
func (n *Node) preflight(ctx context.Context) (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("a real node needs root (bridge, mounts, cgroups)")
	}
	assets, err := kube.AssetsDir()
	if err != nil {
		return "", err
	}
	var missing []error
	for _, bin := range []string{"kubelet", "kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			missing = append(missing, fmt.Errorf("no %s in %s: run test/tools/k8s-assets.sh kubelet kube-controller-manager kube-scheduler", bin, assets))
		}
	}
	for _, bin := range []string{"bin/containerd", "bin/ctr", "bin/containerd-shim-runc-v2", "bin/runc", "bin/coredns", "cni/bridge", "cni/host-local", "cni/loopback"} {
		if _, err := os.Stat(filepath.Join(n.containerd.Runtime, bin)); err != nil {
			missing = append(missing, fmt.Errorf("no %s in %s: run test/tools/node-deps.sh", bin, n.containerd.Runtime))
		}
	}
	for bin, pkg := range map[string]string{
		"ip": "iproute2", "iptables-save": "iptables", "iptables-restore": "iptables",
		"go": "golang (the pause image is built from source)",
	} {
		if _, err := lookPath(bin); err != nil {
			missing = append(missing, fmt.Errorf("no %s in PATH: apt-get install %s", bin, pkg))
		}
	}
	if err := errors.Join(missing...); err != nil {
		return "", err
	}
	// The bridge plugin needs bridge netfilter, and containerd's default snapshotter overlayfs.
	// Both are built into this host's kernel (no /lib/modules at all); load them where modular.
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		if _, err := run(ctx, "modprobe", "br_netfilter"); err != nil {
			n.logf("node: no bridge netfilter and modprobe br_netfilter failed: %v", err)
		}
	}
	n.containerd.Snapshotter = "overlayfs"
	if !overlaySupported(n.Dir) {
		_, _ = run(ctx, "modprobe", "overlay")
		if !overlaySupported(n.Dir) {
			n.logf("node: overlay mounts do not work in %s; containerd uses the native snapshotter (slower image unpacking)", n.Dir)
			n.containerd.Snapshotter = "native"
		}
	}
	// Record the host state Stop restores before anything changes it, on disk too, for the
	// next run should this one end without Stop (reclaim.go).
	n.sysctls = readSysctls()
	n.iptables, err = saveIPTables(ctx)
	if err != nil {
		return "", err
	}
	n.hostDirs = map[string]bool{}
	for _, d := range globalDirs {
		if _, err := os.Lstat(d); os.IsNotExist(err) {
			n.hostDirs[d] = true
		}
	}
	if err := n.writeHostState(); err != nil {
		return "", err
	}
	return assets, os.MkdirAll(n.logDir, 0o755)
}

// globalDirs are directories outside Dir that the components create on first use (the kubelet's
// container log symlinks, libcni's cache, containerd-shim sockets); Stop removes those that did
// not exist before, once they hold nothing but what the node left.
//
// The kubelet always serves its device-plugin registration socket in
// /var/lib/kubelet/device-plugins, whatever its root directory.
var globalDirs = []string{"/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/containerd", "/var/lib/kubelet", "/run/netns"}

func (n *Node) setUpNetwork(ctx context.Context) error {
	if err := createBridge(ctx, n.opts.Bridge, n.opts.BridgeCIDR); err != nil {
		return err
	}
	n.bridge = true
	// Pods reach the host through the bridge; forwarding is on as on any node, and put back.
	return writeSysctl("net/ipv4/ip_forward", "1")
}

func (n *Node) startAPIServer(ctx context.Context) error {
	var addOnCRDs []kube.Option
	if n.opts.CertManager {
		addOnCRDs = append(addOnCRDs, kube.WithCertManagerCRDs())
	}
	if n.opts.TrustManager {
		addOnCRDs = append(addOnCRDs, kube.WithTrustManagerCRDs())
	}
	opts := append([]kube.Option{kube.WithAPIServerArgs(map[string][]string{
		// Pods need their default ServiceAccount and token volumes.
		"disable-admission-plugins": nil,
		// Pods reach the API server through the kubernetes Service (kube-proxy routes it): the
		// lease reconciler publishes its endpoint at the advertised node IP.
		"advertise-address":        {n.IP},
		"endpoint-reconciler-type": {"lease"},
		// Webhooks and aggregated APIs are reached at their endpoints' pod IPs, which the host
		// routes to on the bridge, rather than through the host's own Service rules.
		"enable-aggregator-routing": {"true"},
		// The node's Hostname address ("e2e-node") resolves nowhere: reach the kubelet (logs,
		// exec) at the node IP.
		"kubelet-preferred-address-types": {"InternalIP"},
		// envtest's default, spelled out: it must not overlap the pod range on the bridge.
		"service-cluster-ip-range": {ServiceCIDR},
	})}, append(addOnCRDs, n.opts.KubeOptions...)...)
	// The API server's output goes to the node's logs with the other components' (envtest
	// discards it by default).
	apiLog, err := os.Create(filepath.Join(n.logDir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	n.apiserverLog = apiLog
	// etcd's data and the API server's certificates live in the node's directory, so their
	// processes name it: Stop, or the next Start after a crashed run (reclaim.go), finds and
	// kills them with the rest. envtest starts them without Pdeathsig.
	certDir, dataDir := filepath.Join(n.Dir, "kube-apiserver"), filepath.Join(n.Dir, "etcd")
	for _, d := range []string{certDir, dataDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	servingCA, err := writeAPIServerCerts(certDir, n.IP)
	if err != nil {
		return fmt.Errorf("the API server's certificates: %w", err)
	}
	// envtest picks a loopback address unless it is given both an address and a port.
	ports, err := listenPorts(n.IP, 6443)
	if err != nil {
		return err
	}
	opts = append(opts, func(env *envtest.Environment, _ string) {
		api := env.ControlPlane.GetAPIServer()
		api.Out, api.Err = apiLog, apiLog
		api.CertDir = certDir
		// Served on the node IP, where pods (through the kubernetes Service) and host processes
		// reach it, with the certificate writeAPIServerCerts made (envtest keeps an existing one).
		api.SecureServing.Address, api.SecureServing.Port = n.IP, strconv.Itoa(ports[0])
		api.SecureServing.CA = servingCA
		if env.ControlPlane.Etcd == nil {
			env.ControlPlane.Etcd = &envtest.Etcd{}
		}
		env.ControlPlane.Etcd.DataDir = dataDir
		// Known before it starts, so Stop can stop (and remove the directories of) an
		// environment that failed halfway: envtest does not on its own.
		n.Env = env
	})
	env, err := kube.Start(opts...)
	if err != nil {
		return fmt.Errorf("%w; last lines of %s:\n%s", err, apiLog.Name(), Tail(apiLog.Name(), 30))
	}
	// Environment.Start always makes a directory of its own in the temp directory for webhook
	// serving certificates (envtest-serving-certs-*, webhooks or not), which only Env.Stop
	// removes: record it with the rest, so a run that ends without Stop leaves nothing there.
	// (A crash while Start installs the CRDs and webhooks, after envtest made the directory
	// and before this record, still leaves it: envtest offers no earlier hook.)
	n.tempDirs = envtestTempDirs(env, n.Dir)
	if err := n.writeHostState(); err != nil {
		return err
	}
	n.Config = env.Config
	if n.Client, err = client.New(env.Config, client.Options{Scheme: kube.Scheme()}); err != nil {
		return err
	}
	n.Clientset, err = kubernetes.NewForConfig(env.Config)
	return err
}

func (n *Node) startContainerd(ctx context.Context) error {
	n.containerd.SandboxImage = PauseImage
	if err := writeCNIConfig(n.containerd.CNIConfDir, filepath.Join(n.Dir, "cni", "ipam"), n.opts.Bridge, n.opts.PodCIDR, n.IP); err != nil {
		return fmt.Errorf("writing the CNI configuration: %w", err)
	}
	config, err := writeContainerdConfig(n.containerd, n.opts.RegistryCAs)
	if err != nil {
		return fmt.Errorf("writing the containerd configuration: %w", err)
	}
	p, err := n.startProcess("containerd", filepath.Join(n.containerd.Runtime, "bin", "containerd"), "--config", config, "--log-level", "info")
	if err != nil {
		return err
	}
	return n.waitContainerd(ctx, p)
}

func (n *Node) importPause(ctx context.Context) error {
	dir := filepath.Join(n.Dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(dir, "pause")
	if err := BuildStatic(ctx, "./test/node/pause", bin); err != nil {
		return err
	}
	img, err := BuildImage([]File{{HostPath: bin, ImagePath: "/pause", Mode: 0o755}}, []string{"/pause"}, nil)
	if err != nil {
		return err
	}
	tarPath := filepath.Join(dir, "pause.tar")
	if err := WriteTarball(img, PauseImage, tarPath); err != nil {
		return err
	}
	return n.ImportImage(ctx, tarPath)
}

func (n *Node) startControlPlane(ctx context.Context, assets string) error {
	confDir := filepath.Join(n.Dir, "config")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	rootCA := filepath.Join(confDir, "ca.crt")
	if err := os.WriteFile(rootCA, n.Config.CAData, 0o644); err != nil {
		return err
	}
	kcmConfig, err := writeKubeconfig(n.Env, confDir, "system:kube-controller-manager")
	if err != nil {
		return err
	}
	saKey := filepath.Join(n.Env.ControlPlane.APIServer.CertDir, "sa-signer.key")
	if _, err := os.Stat(saKey); err != nil {
		return fmt.Errorf("envtest's service-account signing key: %w", err)
	}
	if _, err := n.startProcess("kube-controller-manager", filepath.Join(assets, "kube-controller-manager"),
		controllerManagerArgs(kcmConfig, saKey, rootCA)...); err != nil {
		return err
	}
	schedKubeconfig, err := writeKubeconfig(n.Env, confDir, "system:kube-scheduler")
	if err != nil {
		return err
	}
	schedConfig, err := writeSchedulerConfig(confDir, schedKubeconfig)
	if err != nil {
		return err
	}
	_, err = n.startProcess("kube-scheduler", filepath.Join(assets, "kube-scheduler"), "--config="+schedConfig, "--secure-port=0", "--v=2")
	return err
}

func (n *Node) startKubelet(ctx context.Context, assets string) error {
	if err := createCgroupRoot(n.cgroupRoot); err != nil {
		return err
	}
	n.cgroup = true
	confDir := filepath.Join(n.Dir, "config")
	kubeconfig, err := writeKubeconfig(n.Env, confDir, "system:node:"+n.Name)
	if err != nil {
		return err
	}
	ports, err := listenPorts(n.IP, 10250)
	if err != nil {
		return err
	}
	port := int32(ports[0])
	config := filepath.Join(confDir, "kubelet.yaml")
	if err := writeKubeletConfig(config, kubeletConfig(n, n.cgroupRoot, port)); err != nil {
		return err
	}
	for _, dir := range []string{n.KubeletRoot, n.StaticPodDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
	}
	args := kubeletArgs(n, config, kubeconfig)
	if cp := n.opts.CredentialProvider; cp != nil {
		flags, err := cp.install(filepath.Join(n.Dir, "credential-provider"))
		if err != nil {
			return err
		}
		args = append(args, flags...)
	}
	_, err = n.startProcess("kubelet", filepath.Join(assets, "kubelet"), args...)
	return err
}

// waitReady waits for the Node to be Ready and for the default ServiceAccount, failing early
// with a component's log if one exits.
func (n *Node) waitReady(ctx context.Context) error {
	var last string
	err := n.poll(ctx, 3*time.Minute, func(ctx context.Context) (bool, error) {
		node, err := n.Clientset.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if isNotFound(err) {
			last = "the kubelet has not registered the node"
			return false, nil
		}
		if err != nil {
			return false, err
		}
		ready := false
		last = "no Ready condition yet"
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				last = fmt.Sprintf("Ready=%s: %s", c.Status, c.Message)
				ready = c.Status == corev1.ConditionTrue
			}
		}
		if !ready {
			return false, nil
		}
		// The node lifecycle controller lifts the not-ready taint the node registered with.
		for _, taint := range node.Spec.Taints {
			if taint.Effect == corev1.TaintEffectNoSchedule || taint.Effect == corev1.TaintEffectNoExecute {
				last = "Ready, still tainted " + taint.ToString()
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		if kubelet := n.procs["kubelet"]; kubelet.exited() == nil {
			err = fmt.Errorf("%w (%s); last lines of %s:\n%s", err, last, kubelet.log, Tail(kubelet.log, 30))
		}
		return fmt.Errorf("waiting for node %s to be Ready: %w", n.Name, err)
	}
	return n.WaitForServiceAccount(ctx, "default")
}

// WaitForServiceAccount waits until the namespace's default ServiceAccount exists: pods are
// rejected until the controller-manager has created it.
func (n *Node) WaitForServiceAccount(ctx context.Context, namespace string) error {
	err := n.poll(ctx, time.Minute, func(ctx context.Context) (bool, error) {
		_, err := n.Clientset.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		if isNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for ServiceAccount %s/default: %w", namespace, err)
	}
	return nil
}

// ImportImage imports a docker or OCI archive (WriteTarball) into the containerd namespace the
// kubelet uses, unpacked for its snapshotter, so pods can run it with imagePullPolicy Never.
func (n *Node) ImportImage(ctx context.Context, tarPath string) error {
	if _, err := n.ctr(ctx, "images", "import", "--snapshotter", n.containerd.Snapshotter, tarPath); err != nil {
		return fmt.Errorf("importing %s into the node's containerd: %w", tarPath, err)
	}
	return nil
}

// RemoveImages removes from the node's image store every image whose name contains one of the
// given strings, with the CRI's record of it by image ID, its content and its unpacked
// snapshots (synchronous garbage collection), so the next pod pulls it again in full.
func (n *Node) RemoveImages(ctx context.Context, contains ...string) error {
	out, err := n.ctr(ctx, "images", "list")
	if err != nil {
		return err
	}
	// Columns: REF TYPE DIGEST SIZE PLATFORMS LABELS. The CRI names each image once more by its
	// ID (sha256:<config>), with the same manifest digest.
	type image struct{ ref, digest string }
	var images []image
	digests := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		images = append(images, image{f[0], f[2]})
		for _, c := range contains {
			if strings.Contains(f[0], c) {
				digests[f[2]] = true
			}
		}
	}
	var refs []string
	for _, img := range images {
		if digests[img.digest] {
			refs = append(refs, img.ref)
		}
	}
	if len(refs) == 0 {
		return nil
	}
	_, err = n.ctr(ctx, append([]string{"images", "remove", "--sync"}, refs...)...)
	return err
}

// poll polls cond until it holds, failing as soon as one of the node's components has exited.
func (n *Node) poll(ctx context.Context, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, p := range n.procs {
			if p.stopping {
				continue
			}
			if err := p.exited(); err != nil {
				return false, err
			}
		}
		return cond(ctx)
	})
}

func (n *Node) startProcess(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(name, n.logDir, bin, args...)
	if err != nil {
		return nil, err
	}
	n.procs[name] = p
	return p, nil
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

// lookPath finds a host binary in the PATH the components get (which includes the sbin
// directories a non-login root shell may lack). A path with a slash is returned as is.
func lookPath(bin string) (string, error) {
	if strings.Contains(bin, "/") {
		return bin, nil
	}
	for _, kv := range componentEnv() {
		if path, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, dir := range filepath.SplitList(path) {
				p := filepath.Join(dir, bin)
				if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
					return p, nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s not found", bin)
}
