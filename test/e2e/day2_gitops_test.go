//go:build e2e && day2

package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/clients"
)

// GitOps as users run it (README "GitOps (Argo CD, Flux)"): an annotated Job and an annotated
// bare Pod, as a team keeps them in Git, synced the way Argo CD and Flux sync, then compared
// with the live objects, which the installed webhook mutated, by each tool's own diff code
// (test/tools/gitops). Flux's default and Argo CD's Server-Side Diff (the documented setting)
// see them in sync; Argo CD's default three-way diff reports the rewritten image and nothing
// else, which is why README asks for that setting.
func gitopsInSync(t *testing.T) {
	ctx := context.Background()
	bin := gitopsBinary(t)
	kubeconfig, err := w.node.Kubeconfig("e2e-gitops")
	require.NoError(t, err)
	manifests := t.TempDir()
	for name, text := range map[string]string{
		"app-pod.yaml": fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: app
  annotations:
    %[1]s: %[2]s
spec:
  containers:
  - name: app
    image: %[3]s
    command: [/bin/sh, -c, "sleep 3600"]
`, policies.AnnotationConnector, connectorName, w.appImage()),
		"build-job.yaml": fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: build
  annotations:
    %[1]s: %[2]s
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: build
        image: %[3]s
        command: [/bin/sh, -c, "echo built"]
`, policies.AnnotationConnector, connectorName, w.appImage()),
	} {
		require.NoError(t, os.WriteFile(filepath.Join(manifests, name), []byte(text), 0o644))
	}
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	serverSideDiff := filepath.Join(root, "test/tools/gitops/testdata/argocd/server-side-diff.yaml")

	for _, tool := range []string{"argocd", "flux"} {
		ns := "gitops-" + tool
		namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{policies.LabelProxyInject: "true"}}}
		require.NoError(t, w.node.Client.Create(ctx, namespace))
		// Gone before the next step: uninstall refuses while annotated pods run.
		t.Cleanup(func() {
			_ = w.node.Client.Delete(ctx, namespace)
			_ = waitFor(ctx, 2*time.Minute, func() (bool, error) {
				err := w.node.Client.Get(ctx, keyOf(namespace), &corev1.Namespace{})
				return apierrors.IsNotFound(err), nil
			}, nil)
		})
		require.NoError(t, w.node.WaitForServiceAccount(ctx, ns))
		require.NoError(t, w.addConnector(ctx, ns))
		out, err := exec.Command(bin, "apply", "--tool", tool, "--kubeconfig", kubeconfig, "--namespace", ns, manifests).CombinedOutput()
		require.NoError(t, err, "%s sync: %s", tool, out)

		diff := func(args ...string) []driftResult {
			cmd := exec.Command(bin, append(append([]string{"diff", "--kubeconfig", kubeconfig, "--namespace", ns, "-o", "json"}, args...), manifests)...)
			out, err := cmd.Output()
			var exit *exec.ExitError
			if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
				require.NoError(t, err, "gitops-drift diff %v: %s", args, out)
			}
			var results []driftResult
			require.NoError(t, json.Unmarshal(out, &results), "%s", out)
			require.Len(t, results, 2, "one result per object")
			return results
		}
		if tool == "flux" {
			for _, r := range diff("--tool", "flux") {
				assert.Equal(t, "in sync", r.Status, "Flux's default diff of %s: %+v", r.Object, r)
			}
			continue
		}
		for _, r := range diff("--tool", "argocd", "--argocd-application", serverSideDiff) {
			assert.Equal(t, "in sync", r.Status, "Argo CD with Server-Side Diff (README's setting), %s: %+v", r.Object, r)
		}
		for _, r := range diff("--tool", "argocd") {
			require.Equal(t, "drift", r.Status, "Argo CD's default three-way diff of %s", r.Object)
			for _, f := range r.Fields {
				assert.True(t, strings.HasSuffix(f.Path, ".image"), "Argo CD's default reports only the rewritten image, not %s", f.Path)
			}
		}
	}
}

// driftResult is one line of gitops-drift diff -o json.
type driftResult struct {
	Tool   string `json:"tool"`
	Object string `json:"object"`
	Status string `json:"status"`
	Fields []struct {
		Path string `json:"path"`
	} `json:"fields"`
	Error string `json:"error"`
}

// gitopsBinary is gitops-drift, built by test/tools/gitops.sh into the cache.
func gitopsBinary(t *testing.T) string {
	t.Helper()
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(root, "test/tools/gitops.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err, "building gitops-drift")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
