//go:build e2e

package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/clients"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/node"
)

const (
	nsA, nsB      = "team-a", "team-b"
	connectorName = "harbor"
	project       = "team"
	productNS     = "connectors-system"
	// tokenLifetime is the CSI token lifetime config/csi/csidriver.yaml sets: the kubelet's
	// minimum.
	tokenLifetime = 600
)

// world is everything the suite started.
type world struct {
	work       string
	node       *node.Node
	harbor     *testharbor.Server
	harborHost string // <host name>:<port>, the registry as image names write it
	robot      string // the connector's robot account ...
	secret     string // ... and its password, which must never reach a workload
	product    *product
}

func setUp(ctx context.Context, timer *phases) (*world, error) {
	w := &world{}
	var err error
	if w.work, err = os.MkdirTemp("", "harbor-connector-e2e-"); err != nil {
		return w, err
	}
	var crane string
	if err := timer.run("build crane for the test images", func() error {
		crane, err = buildCrane(ctx, w.work)
		return err
	}); err != nil {
		return w, err
	}
	if err := timer.run("test Harbor with a private project", func() error { return w.startHarbor() }); err != nil {
		return w, err
	}
	credentialProvider, err := kubeletCredentialProvider(ctx, w.work)
	if err != nil {
		return w, err
	}
	if err := timer.run("cluster: apiserver, etcd, containerd, kubelet, kube-proxy, CoreDNS, cert-manager", func() error {
		harborCA := filepath.Join(w.work, "harbor-ca.crt")
		if err := os.WriteFile(harborCA, w.harbor.CACertPEM(), 0o644); err != nil {
			return err
		}
		w.node, err = node.Start(ctx, node.Options{
			// containerd trusts the Harbor's CA, so an un-rewritten pull reaches Harbor and is
			// refused for lack of credentials, not for TLS (scenario 1's control).
			RegistryCAs: map[string]string{w.harborHost: harborCA},
			// Cluster DNS answers the Harbor's name with the node IP, where it also listens, as
			// a company's DNS names its Harbor for the pods that reach it (the proxy).
			NodeNames:    []string{testharbor.LoopbackHostName()},
			CertManager:  true,
			TrustManager: true,
			// make e2e: connectors-credential-provider, as node bootstrap installs it.
			CredentialProvider: credentialProvider,
			Log:                func(format string, args ...any) { fmt.Printf("   node: "+format+"\n", args...) },
		})
		if err != nil {
			return err
		}
		return w.harbor.ServeAlso(w.node.IP)
	}); err != nil {
		return w, err
	}
	src, err := clients.RepoRoot()
	if err != nil {
		return w, err
	}
	if installFrom != "" {
		// Day 2: the cluster starts with an earlier build, which the suite then upgrades.
		if err := timer.run("checkout of the earlier build "+installFrom[:12], func() error {
			src, err = checkoutRevision(ctx, src, installFrom, filepath.Join(w.work, "earlier"))
			return err
		}); err != nil {
			return w, err
		}
	}
	if w.product, err = install(ctx, timer, w.work, w.node, src); err != nil {
		return w, err
	}
	if err := timer.run("images: push app and crane to Harbor", func() error { return w.pushImages(ctx, crane) }); err != nil {
		return w, err
	}
	if err := timer.run("tenants: namespaces, Secret, Connector Ready", func() error { return w.tenants(ctx) }); err != nil {
		return w, err
	}
	return w, nil
}

// installFrom is the revision the suite installs first; "" is this checkout. The day-2 suite
// sets an earlier one and upgrades from it (day2_test.go).
var installFrom string

// checkoutRevision clones repo into dir sharing its objects (nothing is added to repo) and
// checks out rev: the checkout make builds and deploys the earlier product from (make images
// dates and labels the images from its git history).
func checkoutRevision(ctx context.Context, repo, rev, dir string) (string, error) {
	for _, args := range [][]string{
		{"clone", "--quiet", "--shared", "--no-checkout", repo, dir},
		{"-C", dir, "checkout", "--quiet", "--detach", rev},
	} {
		if out, err := exec.CommandContext(ctx, "git", args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("git %s (the repository's history is needed: a full clone): %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return dir, nil
}

func (w *world) startHarbor() error {
	host := testharbor.LoopbackHostName()
	if host == "" {
		return errors.New("the e2e suite needs this machine's host name to resolve to a loopback address (as /etc/hosts usually has it): clients behind HTTPS_PROXY must name the registry, and pods must not resolve it themselves")
	}
	var err error
	w.harbor, err = testharbor.Start(testharbor.Options{TLS: true, Hosts: []string{host, "127.0.0.1"}, ExternalHost: host})
	if err != nil {
		return err
	}
	w.harborHost = w.harbor.Host()
	w.harbor.AddProject(project, false)
	w.robot, w.secret = w.harbor.AddRobot(project, "e2e", testharbor.ActionPull, testharbor.ActionPush)
	return nil
}

// tenants: namespace A owns the connector; B is another team on the same cluster. Both opt in.
func (w *world) tenants(ctx context.Context) error {
	c := w.node.Client
	for _, ns := range []string{nsA, nsB} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{policies.LabelProxyInject: "true"}}}); err != nil {
			return err
		}
		if err := w.node.WaitForServiceAccount(ctx, ns); err != nil {
			return err
		}
	}
	// What any pod of B could mount to trust the proxy (scenario 4).
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "proxy-ca"}, Data: map[string]string{"ca.crt": string(w.product.proxyCA)}}); err != nil {
		return err
	}
	return w.addConnector(ctx, nsA)
}

// addConnector gives namespace ns the robot's Secret, the Harbor's CA and a Connector named
// connectorName, and waits until it is Ready.
func (w *world) addConnector(ctx context.Context, ns string) error {
	c := w.node.Client
	if err := c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor-robot"},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": w.robot, "password": w.secret},
	}); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor-ca"}, Data: map[string][]byte{"ca.crt": w.harbor.CACertPEM()}}); err != nil {
		return err
	}
	conn := &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: connectorName},
		Spec: v1alpha1.ConnectorSpec{
			ConnectorClassName: v1alpha1.ClassHarbor,
			Address:            w.harbor.URL(),
			Auth:               &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: "harbor-robot"}},
			CACertSecretRef:    &v1alpha1.LocalSecretReference{Name: "harbor-ca"},
		},
	}
	if err := c.Create(ctx, conn); err != nil {
		return err
	}
	return waitFor(ctx, 2*time.Minute, func() (bool, error) {
		if err := c.Get(ctx, keyOf(conn), conn); err != nil {
			return false, err
		}
		for _, cond := range conn.Status.Conditions {
			if cond.Type == v1alpha1.ConditionReady && cond.Status == metav1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	}, func() string {
		return fmt.Sprintf("Connector %s/%s never became Ready: %+v", ns, connectorName, conn.Status.Conditions)
	})
}

func (w *world) tearDown() error {
	var errs []error
	if w.product != nil {
		errs = append(errs, w.product.stop())
	}
	if w.node != nil {
		errs = append(errs, w.node.Stop())
	}
	if w.harbor != nil {
		errs = append(errs, w.harbor.Close())
	}
	if w.work != "" && os.Getenv("E2E_KEEP") == "" {
		errs = append(errs, os.RemoveAll(w.work))
	}
	return errors.Join(errs...)
}

// dumpLogs prints the tail of each product log, for a failure's context.
func (w *world) dumpLogs() {
	if w == nil || w.product == nil {
		return
	}
	w.product.dumpLogs(w.node)
}
