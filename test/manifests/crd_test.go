// Package manifests_test applies the project's install manifests and the seed product's
// Connector manifests to the real API server and checks what it accepts and refuses.
package manifests_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
)

var (
	env  *envtest.Environment
	k8s  client.Client
	root string
)

func TestMain(m *testing.M) {
	var err error
	if root, err = clients.RepoRoot(); err == nil {
		// Admission as on a provider that limits the system-* priority classes (GKE):
		// TestInstallPodsAdmitted relies on it. trust-manager's Bundle CRD, so config/trust applies.
		env, err = kube.Start(kube.WithCertManagerCRDs(), kube.WithTrustManagerCRDs(), kube.WithAPIServerArgs(map[string][]string{
			"admission-control-config-file": {filepath.Join(root, "test", "manifests", "testdata", "admission.yaml")},
		}))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s, err = client.New(env.Config, client.Options{Scheme: kube.Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	stdout, stderr, err := kube.Kubectl(env, args...)
	out := ""
	if stdout != nil {
		b, _ := readAll(stdout)
		out += b
	}
	if stderr != nil {
		b, _ := readAll(stderr)
		out += b
	}
	return out, err
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crd-"}}
	require.NoError(t, k8s.Create(context.Background(), ns))
	return ns.Name
}

// The seed product's Connector manifests apply unchanged with the real kubectl (strict field
// validation, as kubectl does by default). testdata/seeds holds the project's own byte-for-byte
// copies of them, so the repository needs nothing beside it.
func TestSeedManifestsApplyUnchanged(t *testing.T) {
	seeds, err := filepath.Glob(filepath.Join(root, "test", "manifests", "testdata", "seeds", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, seeds, "no seed manifests in test/manifests/testdata/seeds")
	for _, seed := range seeds {
		t.Run(filepath.Base(seed), func(t *testing.T) {
			ns := newNamespace(t)
			out, err := kubectl(t, "apply", "--validate=strict", "-n", ns, "-f", seed)
			require.NoError(t, err, out)
			assert.Contains(t, out, "connector.connectors.alauda.io/")
			var list v1alpha1.ConnectorList
			require.NoError(t, k8s.List(context.Background(), &list, client.InNamespace(ns)))
			require.Len(t, list.Items, 1)
			assert.Equal(t, v1alpha1.ClassHarbor, list.Items[0].Spec.ConnectorClassName)
			assert.Equal(t, "https://harbor.example.com", list.Items[0].Spec.Address)
		})
	}
}

func TestPrinterColumns(t *testing.T) {
	ns := newNamespace(t)
	out, err := kubectl(t, "apply", "-n", ns, "-f", filepath.Join(root, "config", "samples", "connector-basic.yaml"))
	require.NoError(t, err, out)
	out, err = kubectl(t, "get", "connectors", "-n", ns)
	require.NoError(t, err, out)
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	assert.Equal(t, []string{"NAME", "CLASS", "ADDRESS", "READY", "REASON", "AGE"}, header)
}

func TestSchemaValidation(t *testing.T) {
	ns := newNamespace(t)
	valid := func() *v1alpha1.Connector {
		return &v1alpha1.Connector{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "c-"},
			Spec: v1alpha1.ConnectorSpec{
				ConnectorClassName: v1alpha1.ClassHarbor,
				Address:            "https://harbor.example.com",
				Auth:               &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: "robot"}},
			},
		}
	}
	cases := []struct {
		name   string
		mutate func(*v1alpha1.Connector)
		want   string // "" means accepted
	}{
		{"valid", func(*v1alpha1.Connector) {}, ""},
		{"oci class", func(c *v1alpha1.Connector) { c.Spec.ConnectorClassName = v1alpha1.ClassOCI }, ""},
		{"http address with port and path", func(c *v1alpha1.Connector) { c.Spec.Address = "http://10.0.0.5:8080/harbor" }, ""},
		{"anonymous", func(c *v1alpha1.Connector) { c.Spec.Auth = nil }, ""},
		{"same-namespace secretRef", func(c *v1alpha1.Connector) { c.Spec.Auth.SecretRef.Namespace = ns }, ""},
		{"unknown class", func(c *v1alpha1.Connector) { c.Spec.ConnectorClassName = "gitlab" }, `Unsupported value: "gitlab"`},
		{"address without scheme", func(c *v1alpha1.Connector) { c.Spec.Address = "harbor.example.com" }, "must be an http:// or https:// URL"},
		{"ftp address", func(c *v1alpha1.Connector) { c.Spec.Address = "ftp://harbor.example.com" }, "must be an http:// or https:// URL"},
		{"address with credentials", func(c *v1alpha1.Connector) { c.Spec.Address = "https://admin:Harbor12345@harbor.example.com" }, "must not contain credentials"},
		{"address with query", func(c *v1alpha1.Connector) { c.Spec.Address = "https://harbor.example.com/?x=1" }, "must not contain a query"},
		{"unknown auth name", func(c *v1alpha1.Connector) { c.Spec.Auth.Name = "tokenAuth" }, `Unsupported value: "tokenAuth"`},
		{"basicAuth without secretRef", func(c *v1alpha1.Connector) { c.Spec.Auth.SecretRef = nil }, "spec.auth.secretRef is required"},
		{"secret name not a DNS name", func(c *v1alpha1.Connector) { c.Spec.Auth.SecretRef.Name = "Robot_Secret" }, "spec.auth.secretRef.name"},
		{"connector name not a DNS label", func(c *v1alpha1.Connector) { c.GenerateName = ""; c.Name = "team.harbor" }, "metadata.name must be a DNS label"},
		{"CA secret name not a DNS name", func(c *v1alpha1.Connector) {
			c.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: "CA!"}
		}, "spec.caCertSecretRef.name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(c)
			err := k8s.Create(context.Background(), c)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// A secretRef into another namespace is refused by the ValidatingAdmissionPolicy in
// config/admission (CRD rules cannot see metadata.namespace).
func TestSecretRefNamespacePolicy(t *testing.T) {
	out, err := kubectl(t, "apply", "--server-side", "--field-manager=harbor-connector-test", "-k", filepath.Join(root, "config", "admission"))
	require.NoError(t, err, out)
	ns := newNamespace(t)
	c := &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cross"},
		Spec: v1alpha1.ConnectorSpec{
			ConnectorClassName: v1alpha1.ClassHarbor,
			Address:            "https://harbor.example.com",
			Auth:               &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: "robot", Namespace: "kube-system"}},
		},
	}
	// The policy is enforced once the API server's policy informer has it: poll briefly.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err = k8s.Create(context.Background(), c.DeepCopy())
		if err != nil || time.Now().After(deadline) {
			break
		}
		require.NoError(t, k8s.Delete(context.Background(), c.DeepCopy()))
		time.Sleep(200 * time.Millisecond)
	}
	if err == nil {
		status, _ := kubectl(t, "get", "validatingadmissionpolicy", "connectors-secretref-namespace", "-o", "yaml")
		t.Fatalf("a Connector reading a Secret in kube-system must be refused; policy:\n%s", status)
	}
	assert.Contains(t, err.Error(), `spec.auth.secretRef.namespace "kube-system" must equal the Connector's namespace "`+ns+`"`)
}
