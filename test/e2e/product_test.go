//go:build e2e

package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/images"
	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/test/node"
	"github.com/alauda/harbor-connector/test/testca"
)

// The product image the node listener DaemonSet runs; imported into containerd, never pulled.
// Under the project's own repository path, like the committed manifests' names.
const proxyImage = images.Repository + "/proxy:e2e"

// binaries are the product's commands and the static tools that go into test images.
type binaries struct {
	manager, proxy, csiDriver, crane string
}

// buildBinaries builds static binaries (they go into images with an empty base) and a static
// crane at the version test/tools/clients.sh pins.
func buildBinaries(ctx context.Context, work string) (*binaries, error) {
	root, err := clients.RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(work, "bin")
	b := &binaries{manager: filepath.Join(bin, "manager"), proxy: filepath.Join(bin, "proxy"), csiDriver: filepath.Join(bin, "csi-driver"), crane: filepath.Join(bin, "crane")}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin+"/", "./cmd/manager", "./cmd/proxy", "./cmd/csi-driver")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the product: %v\n%s", err, out)
	}
	crane := exec.CommandContext(ctx, "go", "install", craneModule)
	crane.Dir, crane.Env = work, append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+bin, "GOFLAGS=-trimpath")
	if out, err := crane.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building a static crane: %v\n%s", err, out)
	}
	return b, nil
}

// craneModule is the crane test/tools/clients.sh pins, built static for the test image.
const craneModule = "github.com/google/go-containerregistry/cmd/crane@v0.20.6"

// product is the running product: the proxy, the manager and the CSI driver as host processes
// with the flags their manifests use (the node has no images of them and no cert-manager), and
// the node listener as the DaemonSet from config/proxy/node.yaml.
type product struct {
	dir             string
	procs           []*exec.Cmd
	logs            []string
	nodeIP          string
	proxyCAFile     string
	interceptCAFile string
}

func startProduct(ctx context.Context, work string, n *node.Node, bins *binaries) (*product, error) {
	p := &product{dir: filepath.Join(work, "product"), nodeIP: n.IP}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return p, err
	}
	kubeconfig, err := adminKubeconfig(n.Env, p.dir)
	if err != nil {
		return p, err
	}
	if err := p.certificates(); err != nil {
		return p, err
	}
	reverse := net.JoinHostPort(n.IP, reversePort)
	if err := p.start("proxy", bins.proxy, "--kubeconfig", kubeconfig,
		"--https-address", reverse, "--tls-cert-dir", filepath.Join(p.dir, "proxy-tls"),
		"--forward-address", net.JoinHostPort(n.IP, forwardPort), "--forward-tls-address", net.JoinHostPort(n.IP, forwardTLSPort),
		"--intercept-ca-dir", filepath.Join(p.dir, "intercept-ca"),
		"--node-forwarders", nodeNS+"/connectors-node",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0"); err != nil {
		return p, err
	}
	wh := n.Env.WebhookInstallOptions
	if err := p.start("manager", bins.manager, "--kubeconfig", kubeconfig,
		"--leader-elect", "--leader-election-namespace", "default", "--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:0",
		"--retry-interval", "5s", "--webhook-port", strconv.Itoa(wh.LocalServingPort), "--webhook-cert-dir", wh.LocalServingCertDir,
		"--forward-proxy-url", "http://"+net.JoinHostPort(n.IP, forwardPort), "--pull-host", "127.0.0.1:5050",
		// In a cluster the reverse address is a .svc name, already in NO_PROXY; here it is the
		// bridge address, so it is added the way an admin adds internal domains.
		"--no-proxy", n.IP,
		"--proxy-address", "https://"+reverse, "--proxy-ca-file", p.proxyCAFile); err != nil {
		return p, err
	}
	if err := p.start("csi-driver", bins.csiDriver, "--kubeconfig", kubeconfig, "--node-id", n.Name,
		"--endpoint", filepath.Join(n.KubeletRoot, "plugins", "connectors-csi", "csi.sock"),
		"--kubelet-registration-dir", filepath.Join(n.KubeletRoot, "plugins_registry"),
		"--forward-proxy", "http://"+net.JoinHostPort(n.IP, forwardPort), "--forward-proxy-tls", "https://"+net.JoinHostPort(n.IP, forwardTLSPort),
		"--reverse-host", reverse,
		"--ca-bundle-files", p.proxyCAFile+","+p.interceptCAFile,
		"--health-probe-bind-address", "127.0.0.1:0"); err != nil {
		return p, err
	}
	if err := p.applyManifests(ctx, n, bins); err != nil {
		return p, err
	}
	return p, p.waitWebhook(ctx, wh.LocalServingHost, wh.LocalServingPort)
}

// certificates does cert-manager's job: the proxy's serving certificate for the bridge address
// (where pods and the node listener reach it) and the interception CA.
func (p *product) certificates() error {
	proxyCA, err := testca.New("connectors-proxy e2e CA")
	if err != nil {
		return err
	}
	leaf, err := proxyCA.Issue(p.nodeIP, "127.0.0.1")
	if err != nil {
		return err
	}
	if p.proxyCAFile, err = writeCertDir(filepath.Join(p.dir, "proxy-tls"), leaf.CertPEM, leaf.KeyPEM, proxyCA.CertPEM); err != nil {
		return err
	}
	intercept, err := testca.New("connectors interception e2e CA")
	if err != nil {
		return err
	}
	p.interceptCAFile, err = writeCertDir(filepath.Join(p.dir, "intercept-ca"), intercept.CertPEM, intercept.KeyPEM(), intercept.CertPEM)
	return err
}

// writeCertDir writes tls.crt, tls.key and ca.crt the way a cert-manager Secret is mounted.
func writeCertDir(dir string, cert, key, ca []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": ca} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "ca.crt"), nil
}

func adminKubeconfig(env *envtest.Environment, dir string) (string, error) {
	admin, err := env.AddUser(envtest.User{Name: "e2e-product", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

func (p *product) start(name, bin string, args ...string) error {
	logPath := filepath.Join(p.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p.procs = append(p.procs, cmd)
	p.logs = append(p.logs, logPath)
	return nil
}

// applyManifests applies the parts that run as Kubernetes objects from config/: the CSIDriver
// and the node listener DaemonSet in the node agents' namespace (with the test's image, and the
// proxy at the bridge address since the node has no Service routing). connectors-system is the
// manager's and the proxy's (their --credentials-namespace).
func (p *product) applyManifests(ctx context.Context, n *node.Node, bins *binaries) error {
	root, err := clients.RepoRoot()
	if err != nil {
		return err
	}
	c := n.Client
	for _, ns := range []string{productNS, nodeNS} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	objs, err := decodeManifests(filepath.Join(root, "config/csi/csidriver.yaml"), filepath.Join(root, "config/proxy/node.yaml"))
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(p.proxyCAFile)
	if err != nil {
		return err
	}
	// What trust-manager copies into connectors-node from the ca.crt of cert-manager's
	// connectors-proxy-tls Secret (config/trust: Bundle connectors-proxy-ca); the node has
	// neither, and test/trust runs the real trust-manager on that Bundle.
	objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: nodeNS, Name: "connectors-proxy-ca"}, Data: map[string]string{"ca.crt": string(caPEM)}})
	img, err := node.BuildImage([]node.File{{HostPath: bins.proxy, ImagePath: "/proxy", Mode: 0o755}}, []string{"/proxy"}, nil)
	if err != nil {
		return err
	}
	tarball := filepath.Join(p.dir, "proxy-image.tar")
	if err := node.WriteTarball(img, proxyImage, tarball); err != nil {
		return err
	}
	if err := n.ImportImage(ctx, tarball); err != nil {
		return err
	}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *storagev1.CSIDriver:
			// The kubelet's minimum lifetime, so the token-refresh scenario sees a republish.
			for i := range o.Spec.TokenRequests {
				o.Spec.TokenRequests[i].ExpirationSeconds = ptr(int64(tokenLifetime))
			}
		case *appsv1.DaemonSet:
			ctr := &o.Spec.Template.Spec.Containers[0]
			ctr.Image, ctr.ImagePullPolicy = proxyImage, corev1.PullNever
			for i, a := range ctr.Args {
				if strings.HasPrefix(a, "--upstream-proxy=") {
					ctr.Args[i] = "--upstream-proxy=https://" + net.JoinHostPort(n.IP, reversePort)
				}
			}
		}
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return waitFor(ctx, 2*time.Minute, func() (bool, error) {
		var ds appsv1.DaemonSet
		if err := c.Get(ctx, client.ObjectKey{Namespace: nodeNS, Name: "connectors-node"}, &ds); err != nil {
			return false, err
		}
		return ds.Status.NumberReady == 1, nil
	}, func() string {
		return "the connectors-node DaemonSet pod never became Ready: " + podSummary(ctx, c, nodeNS)
	})
}

// decodeManifests reads multi-document YAML files into typed objects.
func decodeManifests(paths ...string) ([]client.Object, error) {
	decoder := serializer.NewCodecFactory(kube.Scheme()).UniversalDeserializer()
	var out []client.Object
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		reader := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, _, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			out = append(out, obj.(client.Object))
		}
	}
	return out, nil
}

func (p *product) waitWebhook(ctx context.Context, host string, port int) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	return waitFor(ctx, time.Minute, func() (bool, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	}, func() string { return "the manager's webhook never listened on " + addr })
}

func (p *product) stop() error {
	var errs []error
	for _, cmd := range p.procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			errs = append(errs, fmt.Errorf("%s did not stop on SIGTERM", cmd.Path))
			<-done
		}
	}
	return errors.Join(errs...)
}

func (p *product) dumpLogs() {
	for _, l := range p.logs {
		data, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Printf("---- %s (last %d lines)\n%s\n", l, len(lines), strings.Join(lines, "\n"))
	}
}

func ptr[T any](v T) *T { return &v }
