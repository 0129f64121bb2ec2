// Package uninstall_test runs `make undeploy`'s script (test/tools/undeploy.sh) with the real
// kubectl against a real API server of its own (envtest: deleting the install and the CRD would
// break the other suites' server). envtest runs no namespace controller, so namespaces stay
// Terminating here and the script runs with WAIT=false; the cluster test bed, which runs
// kube-controller-manager, can run it as users do (README "Uninstall").
package uninstall_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
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
		env, err = kube.Start(kube.WithCertManagerCRDs(), kube.WithTrustManagerCRDs())
	}
	if err == nil {
		scheme := kube.Scheme()
		err = apiextensionsv1.AddToScheme(scheme)
		if err == nil {
			k8s, err = client.New(env.Config, client.Options{Scheme: scheme})
		}
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

// undeploy runs `make undeploy`'s script with the test bed's kubectl and the given settings.
func undeploy(t *testing.T, settings ...string) (string, error) {
	t.Helper()
	kubeconfig, err := kube.AdminKubeconfig(env, t.TempDir())
	require.NoError(t, err)
	assets, err := kube.AssetsDir()
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(root, "test", "tools", "undeploy.sh"))
	cmd.Env = append(os.Environ(), append([]string{"KUBECONFIG=" + kubeconfig, "PATH=" + assets + string(os.PathListSeparator) + os.Getenv("PATH"),
		"OVERLAY=config/overlays/none", "WAIT=false"}, settings...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// Uninstalling keeps the Connector CRD and every Connector unless asked, refuses while
// workloads the webhook mutated still depend on the install (naming them), and otherwise leaves
// no object of the install behind; DELETE_CRD=true then deletes the CRD and the Connectors.
func TestUndeploy(t *testing.T) {
	ctx := context.Background()
	stdout, stderr, err := kube.Kubectl(env, "apply", "--server-side", "-k", filepath.Join(root, "config", "default"))
	if err != nil {
		b, _ := readAll(stderr)
		a, _ := readAll(stdout)
		t.Fatalf("applying config/default: %v\n%s%s", err, a, b)
	}
	rendered, err := kube.Kustomize(env, filepath.Join(root, "config", "default"))
	require.NoError(t, err)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "team-"}}
	require.NoError(t, k8s.Create(ctx, ns))
	conn := &v1alpha1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "harbor"},
		Spec: v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassHarbor, Address: "https://harbor.example.invalid"}}
	require.NoError(t, k8s.Create(ctx, conn))
	// What the webhook leaves on what it mutated: the label (no webhook serves here, and these
	// carry nothing else that would call one).
	marked := map[string]string{policies.LabelProxyInjected: "true"}
	spec := corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "build-1", Labels: marked}, Spec: spec}
	require.NoError(t, k8s.Create(ctx, pod))
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "build"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: marked}, Spec: spec}}}
	require.NoError(t, k8s.Create(ctx, job))

	t.Run("refuses while mutated workloads depend on the install", func(t *testing.T) {
		out, err := undeploy(t)
		require.Error(t, err, out)
		assert.Contains(t, out, "1 pod(s) (running or pending):\n    "+ns.Name+"/build-1\n")
		assert.Contains(t, out, "1 unfinished job(s) whose pod template was mutated:\n    "+ns.Name+"/build\n")
		assert.Contains(t, out, "stop pulling")
		assert.Contains(t, out, "FORCE=true")
		left, err := kube.InstallLeftovers(ctx, env.Config, rendered, true)
		require.NoError(t, err)
		assert.Len(t, left, len(rendered)-1, "nothing was deleted")
	})

	t.Run("FORCE=true: everything but the CRD and the Connectors goes", func(t *testing.T) {
		out, err := undeploy(t, "FORCE=true")
		require.NoError(t, err, out)
		assert.Contains(t, out, "FORCE=true: uninstalling anyway")
		left, err := kube.InstallLeftovers(ctx, env.Config, rendered, true)
		require.NoError(t, err)
		// envtest has no namespace controller: the three namespaces stay Terminating here.
		assert.ElementsMatch(t, []string{"Namespace connectors-system (terminating)", "Namespace connectors-node (terminating)",
			"Namespace connectors-credentials (terminating)"}, left)
		require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(conn), &v1alpha1.Connector{}), "the Connector stays")
	})

	t.Run("DELETE_CRD=true: the CRD and every Connector go too", func(t *testing.T) {
		out, err := undeploy(t, "FORCE=true", "DELETE_CRD=true")
		require.NoError(t, err, out)
		assert.Contains(t, out, "every Connector")
		require.Eventually(t, func() bool {
			err := k8s.Get(ctx, client.ObjectKey{Name: "connectors.connectors.alauda.io"}, &apiextensionsv1.CustomResourceDefinition{})
			return apierrors.IsNotFound(err)
		}, 30*time.Second, 100*time.Millisecond, "the CRD is deleted")
		left, err := kube.InstallLeftovers(ctx, env.Config, rendered, false)
		require.NoError(t, err)
		for _, l := range left {
			assert.True(t, strings.HasPrefix(l, "Namespace ") && strings.HasSuffix(l, " (terminating)"), "left behind: %s", l)
		}
	})
}

func readAll(r io.Reader) (string, error) {
	if r == nil {
		return "", nil
	}
	b, err := io.ReadAll(r)
	return string(b), err
}
