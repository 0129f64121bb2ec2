// Package trust_test runs the real trust-manager (test/tools/trust-manager.sh builds its command
// from the Go module proxy) against the test API server with the flag README "Install on a
// cluster" asks installers for, under the RBAC its Helm chart grants, and checks that the
// install's Bundles (config/trust) put the public CA certificates the node agents mount into
// connectors-node, and nowhere else, and keep them current.
package trust_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/test/testca"
)

const (
	// trustNamespace is the one namespace trust-manager reads Bundle sources from: the flag
	// README and docs/architecture.md tell installers to set (checked below).
	trustNamespace = kube.TrustNamespace
	trustFlag      = "--trust-namespace=" + trustNamespace
	// nodeNamespace holds the node agents, which mount the Bundles' ConfigMaps.
	nodeNamespace = "connectors-node"
	// trustManagerUser is trust-manager's ServiceAccount (testdata/trust-manager-rbac.yaml).
	trustManagerUser = "system:serviceaccount:cert-manager:trust-manager"
)

var (
	env  *envtest.Environment
	k8s  client.Client
	root string
)

func TestMain(m *testing.M) {
	var err error
	if root, err = clients.RepoRoot(); err == nil {
		env, err = kube.Start(kube.WithTrustManagerCRDs(), kube.WithWebhooks("test/trust/testdata/trust-manager-webhook.yaml"))
	}
	if err == nil {
		k8s, err = client.New(env.Config, client.Options{Scheme: kube.Scheme()})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		if env != nil {
			_ = env.Stop()
		}
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// The install's Bundles, reconciled by the real trust-manager: each node agent's ConfigMap volume
// appears in connectors-node with the ca.crt of the Secrets cert-manager fills in
// connectors-system (the proxy's issuing root, the interception CA; never a leaf or a key), in
// no other namespace (not even one that labels itself with connectors-node's name), and follows
// a rotation of either CA.
func TestBundlesCopyTheCAsToConnectorsNode(t *testing.T) {
	ctx := context.Background()
	for _, doc := range []string{"README.md", "docs/architecture.md", "config/trust/kustomization.yaml"} {
		raw, err := os.ReadFile(filepath.Join(root, doc))
		require.NoError(t, err)
		assert.True(t, strings.Contains(string(raw), trustFlag), "%s must tell installers to run trust-manager with %s, the trust namespace this test uses", doc, trustFlag)
	}

	install := render(t)
	for _, ns := range install.namespaces {
		require.NoError(t, k8s.Create(ctx, ns))
	}
	require.NoError(t, kube.ApplyFiles(ctx, k8s, "test/trust/testdata/trust-manager-rbac.yaml"))
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "team-"}}
	require.NoError(t, k8s.Create(ctx, plain))
	// The API server sets this label to the namespace's own name, whatever the creator asks for.
	impostor := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "impostor-",
		Labels: map[string]string{corev1.LabelMetadataName: nodeNamespace}}}
	require.NoError(t, k8s.Create(ctx, impostor))
	assert.Equal(t, impostor.Name, impostor.Labels[corev1.LabelMetadataName])

	// What cert-manager writes for config/certmanager and config/proxy/proxy.yaml's Certificates.
	rootCA := newCA(t, "connectors-root-ca")
	proxyLeaf, err := rootCA.Issue("connectors-proxy.connectors-system.svc")
	require.NoError(t, err)
	proxyTLS := tlsSecret("connectors-proxy-tls", proxyLeaf.CertPEM, proxyLeaf.KeyPEM, rootCA.CertPEM)
	interceptCA := newCA(t, "connectors-interception-ca")
	interceptTLS := tlsSecret("connectors-intercept-ca", interceptCA.CertPEM, interceptCA.KeyPEM(), interceptCA.CertPEM)
	require.NoError(t, k8s.Create(ctx, proxyTLS))
	require.NoError(t, k8s.Create(ctx, interceptTLS))

	startTrustManager(t)

	// A Bundle the CRD's schema admits and only trust-manager's own webhook refuses: that webhook
	// is live, so it also judged the install's Bundles.
	selfSourced := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "trust.cert-manager.io/v1alpha1", "kind": "Bundle",
		"metadata": map[string]any{"name": "self-sourced"},
		"spec": map[string]any{
			"sources": []any{map[string]any{"configMap": map[string]any{"name": "self-sourced", "key": "ca.crt"}}},
			"target":  map[string]any{"configMap": map[string]any{"key": "ca.crt"}},
		},
	}}
	err = k8s.Create(ctx, selfSourced)
	require.Error(t, err, "trust-manager's webhook refuses a Bundle whose target is its own source")
	assert.Contains(t, err.Error(), "cannot define the same source as target")
	for _, b := range install.bundles {
		require.NoError(t, k8s.Create(ctx, b.DeepCopy()), "Bundle %s", b.GetName())
	}

	// Which CA each node agent's ConfigMap must carry: the ca.crt of the Secret its Bundle names.
	want := map[string][]*x509.Certificate{
		"connectors-proxy-ca":     {rootCA.Cert},
		"connectors-intercept-ca": {interceptCA.Cert},
	}
	for _, b := range install.bundles {
		sources, _, _ := unstructured.NestedSlice(b.Object, "spec", "sources")
		require.Len(t, sources, 1, "Bundle %s", b.GetName())
		secret, _, _ := unstructured.NestedStringMap(sources[0].(map[string]any), "secret")
		assert.Equal(t, "ca.crt", secret["key"], "Bundle %s copies the CA certificate of its Secret, never tls.crt or tls.key", b.GetName())
		switch secret["name"] {
		case proxyTLS.Name:
			assert.Equal(t, "connectors-proxy-ca", b.GetName())
		case interceptTLS.Name:
			assert.Equal(t, "connectors-intercept-ca", b.GetName())
		default:
			t.Errorf("Bundle %s sources Secret %q, which the install's Certificates do not fill", b.GetName(), secret["name"])
		}
	}
	require.Len(t, install.bundles, len(want))
	for name, certs := range want {
		waitForCAs(t, name, certs)
		assertSynced(t, name)
	}

	t.Run("each node agent mounts a ConfigMap trust-manager keeps", func(t *testing.T) {
		mounts := 0
		for _, ds := range install.daemonSets {
			assert.Equal(t, nodeNamespace, ds.Namespace, "DaemonSet %s", ds.Name)
			for _, v := range ds.Spec.Template.Spec.Volumes {
				assert.Nil(t, v.Secret, "%s mounts a Secret (%s), which connectors-node does not hold", ds.Name, v.Name)
				if v.ConfigMap == nil {
					continue
				}
				mounts++
				var cm corev1.ConfigMap
				require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: ds.Namespace, Name: v.ConfigMap.Name}, &cm), "%s's volume %s", ds.Name, v.Name)
				for _, item := range v.ConfigMap.Items {
					assert.NotEmpty(t, cm.Data[item.Key], "%s's volume %s: key %s", ds.Name, v.Name, item.Key)
				}
			}
		}
		assert.Equal(t, 3, mounts, "the node listener's proxy CA, the CSI driver's proxy and interception CAs")
	})

	t.Run("the ConfigMaps exist in connectors-node only", func(t *testing.T) {
		var namespaces corev1.NamespaceList
		require.NoError(t, k8s.List(ctx, &namespaces))
		for _, ns := range namespaces.Items {
			for name := range want {
				err := k8s.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: name}, &corev1.ConfigMap{})
				if ns.Name == nodeNamespace {
					assert.NoError(t, err)
				} else {
					assert.True(t, apierrors.IsNotFound(err), "ConfigMap %s in %s: %v", name, ns.Name, err)
				}
			}
		}
	})

	t.Run("a renewed serving certificate changes nothing, a rotated CA follows", func(t *testing.T) {
		renewed, err := rootCA.Issue("connectors-proxy.connectors-system.svc")
		require.NoError(t, err)
		proxyTLS.Data["tls.crt"], proxyTLS.Data["tls.key"] = renewed.CertPEM, renewed.KeyPEM
		require.NoError(t, k8s.Update(ctx, proxyTLS))

		rotated := newCA(t, "connectors-interception-ca")
		interceptTLS.Data = map[string][]byte{"tls.crt": rotated.CertPEM, "tls.key": rotated.KeyPEM(), "ca.crt": rotated.CertPEM}
		require.NoError(t, k8s.Update(ctx, interceptTLS))
		waitForCAs(t, "connectors-intercept-ca", []*x509.Certificate{rotated.Cert})
		waitForCAs(t, "connectors-proxy-ca", []*x509.Certificate{rootCA.Cert})

		newRoot := newCA(t, "connectors-root-ca")
		leaf, err := newRoot.Issue("connectors-proxy.connectors-system.svc")
		require.NoError(t, err)
		proxyTLS.Data = map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": newRoot.CertPEM}
		require.NoError(t, k8s.Update(ctx, proxyTLS))
		waitForCAs(t, "connectors-proxy-ca", []*x509.Certificate{newRoot.Cert})
	})
}

// installObjects are the parts of the rendered config/default this test uses.
type installObjects struct {
	namespaces []*corev1.Namespace
	bundles    []*unstructured.Unstructured
	daemonSets []*appsv1.DaemonSet
}

// render runs `kubectl kustomize config/default` with the test bed's kubectl.
func render(t *testing.T) installObjects {
	t.Helper()
	stdout, stderr, err := kube.Kubectl(env, "kustomize", filepath.Join(root, "config", "default"))
	if err != nil {
		msg, _ := io.ReadAll(stderr)
		require.NoError(t, err, "kubectl kustomize config/default: %s", msg)
	}
	var out installObjects
	dec := yaml.NewYAMLOrJSONDecoder(stdout, 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		u := &unstructured.Unstructured{Object: obj}
		switch u.GetKind() {
		case "Namespace":
			var ns corev1.Namespace
			require.NoError(t, runtimeConvert(u, &ns))
			out.namespaces = append(out.namespaces, &ns)
		case "Bundle":
			out.bundles = append(out.bundles, u)
		case "DaemonSet":
			var ds appsv1.DaemonSet
			require.NoError(t, runtimeConvert(u, &ds))
			out.daemonSets = append(out.daemonSets, &ds)
		}
	}
	require.Len(t, out.namespaces, 3, "connectors-system, connectors-node and connectors-credentials")
	require.Len(t, out.daemonSets, 2, "the node listener and the CSI driver")
	return out
}

func runtimeConvert(u *unstructured.Unstructured, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)
}

func newCA(t *testing.T, name string) *testca.CA {
	t.Helper()
	ca, err := testca.New(name)
	require.NoError(t, err)
	return ca
}

func tlsSecret(name string, cert, key, ca []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: trustNamespace, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": ca},
	}
}

// waitForCAs waits until ConfigMap name in connectors-node holds in ca.crt exactly the given
// certificates and no private key.
func waitForCAs(t *testing.T, name string, want []*x509.Certificate) {
	t.Helper()
	wantDER := derOf(want)
	var last string
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var cm corev1.ConfigMap
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: nodeNamespace, Name: name}, &cm)
		switch {
		case err != nil:
			last = err.Error()
		default:
			got, others := parsePEM(cm.Data["ca.crt"])
			if len(others) > 0 {
				t.Fatalf("ConfigMap %s/%s holds PEM blocks other than certificates: %v", nodeNamespace, name, others)
			}
			if strings.Join(derOf(got), ",") == strings.Join(wantDER, ",") {
				return
			}
			last = fmt.Sprintf("ca.crt holds %d certificate(s): %s", len(got), subjects(got))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("ConfigMap %s/%s never held %s: %s", nodeNamespace, name, subjects(want), last)
}

// assertSynced waits up to 10 s for the Bundle's Synced condition: trust-manager writes the
// target ConfigMap first and the Bundle's status after it, so a test that saw the ConfigMap may
// read the Bundle before its status is there.
func assertSynced(t *testing.T, bundle string) {
	t.Helper()
	var conds []metav1.Condition
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("trust.cert-manager.io/v1alpha1")
		u.SetKind("Bundle")
		require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Name: bundle}, u))
		raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		conds = conds[:0]
		for _, c := range raw {
			m := c.(map[string]any)
			conds = append(conds, metav1.Condition{Type: fmt.Sprint(m["type"]), Status: metav1.ConditionStatus(fmt.Sprint(m["status"])), Reason: fmt.Sprint(m["reason"])})
		}
		if meta.IsStatusConditionTrue(conds, "Synced") || time.Now().After(deadline) {
			break
		}
	}
	assert.True(t, meta.IsStatusConditionTrue(conds, "Synced"), "Bundle %s: %+v", bundle, conds)
}

func parsePEM(data string) (certs []*x509.Certificate, others []string) {
	rest := []byte(data)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return certs, others
		}
		if block.Type != "CERTIFICATE" {
			others = append(others, block.Type)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			others = append(others, "unparsable certificate")
			continue
		}
		certs = append(certs, c)
	}
}

func derOf(certs []*x509.Certificate) []string {
	var out []string
	for _, c := range certs {
		out = append(out, fmt.Sprintf("%x", c.Raw))
	}
	sort.Strings(out)
	return out
}

func subjects(certs []*x509.Certificate) string {
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName+" (serial "+c.SerialNumber.String()+")")
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// startTrustManager runs the trust-manager command as its ServiceAccount (a client certificate
// for that user, no admin rights), with the install's trust namespace, serving its webhook where
// envtest registered it, until the test ends. Its log is printed when the test fails.
func startTrustManager(t *testing.T) {
	t.Helper()
	bin, err := kube.TrustManagerBinary()
	require.NoError(t, err, "build it with test/tools/trust-manager.sh")
	user, err := env.AddUser(envtest.User{Name: trustManagerUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:cert-manager"}}, nil)
	require.NoError(t, err)
	kubeconfig, err := user.KubeConfig()
	require.NoError(t, err)
	dir := t.TempDir()
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfigPath, kubeconfig, 0o600))

	wh := env.WebhookInstallOptions
	readyPort := freePort(t)
	logPath := filepath.Join(dir, "trust-manager.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, kube.TrustManagerArgs(kubeconfigPath, wh.LocalServingHost, wh.LocalServingPort, wh.LocalServingCertDir, readyPort)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("trust-manager's log:\n%s", tail(log, 60))
		}
	})

	ready := "http://127.0.0.1:" + strconv.Itoa(readyPort) + "/readyz"
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("trust-manager exited (%v):\n%s", err, tail(log, 60))
		default:
		}
		if resp, err := http.Get(ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trust-manager not ready at %s within a minute", ready)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
