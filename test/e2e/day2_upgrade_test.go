//go:build e2e && day2

package e2e_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
)

// The earlier build runs workloads; the upgrade to this checkout (make images + make deploy, a
// server-side apply of the kustomize install, README "Upgrade") happens while Jobs pull and
// push, and while new annotated Jobs are created every two seconds: all complete, with the
// right digests, and no admission fails. The CRD on the cluster is then this checkout's.
func upgradeWithKustomize(t *testing.T) {
	ctx := context.Background()
	tr := startTraffic(t, "upgrade", 10)
	tr.running(t)

	stop := make(chan struct{})
	admitted := admitDuring(t, "upgrade", stop)
	src, err := clients.RepoRoot()
	require.NoError(t, err)
	w.product.src = src
	timer := &phases{}
	err = w.product.deploy(ctx, timer, "upgrade", w.node.KubeletRoot)
	close(stop)
	require.NoError(t, err, "the upgrade (immutable fields, CRD changes and rollouts must not block it)")
	jobs, errs := admitted()
	assert.Empty(t, errs, "admission refused annotated Jobs during the upgrade")
	require.NotEmpty(t, jobs)
	for _, job := range jobs {
		res := awaitJob(t, job, 5*time.Minute, false)
		assert.True(t, res.succeeded, "Job %s created during the upgrade: events:\n%s\nlogs:\n%s", job.Name, res.events, res.logs)
	}
	t.Logf("%d annotated Jobs admitted during the upgrade, all completed", len(jobs))
	tr.wait(t)

	pinned := overlayImages(t, src)
	for name, image := range deploymentImages(t) {
		assert.Contains(t, pinned, image, "Deployment %s runs the image this checkout's make images pushed", name)
	}
	crdIsThisCheckouts(t)
	removeEarlierCopies(t)
}

// The earlier build kept the manager's copies of the connectors' credentials in connectors-system
// and gave the manager and the proxy Roles there. This checkout keeps them in
// connectors-credentials: the new manager has no right to delete the old copies, and a
// server-side apply never deletes the old Roles and RoleBindings, so the README "Upgrade" commands
// remove both once the rollout is done. This runs exactly those commands with kubectl and then
// asserts that no copy is left in connectors-system, that the manager's copy is in
// connectors-credentials, that neither account may read or write Secrets in connectors-system
// any more, and that workloads still pull and push (the proxy reads the new copies).
func removeEarlierCopies(t *testing.T) {
	ctx := context.Background()
	c := w.node.Client
	mirrored := client.MatchingLabels{access.LabelMirror: "true"}
	copyKey := access.MirrorKey(credentialsNS, policies.ConnectorRef{Namespace: nsA, Name: connectorName})
	require.NoError(t, waitFor(ctx, time.Minute, func() (bool, error) {
		err := c.Get(ctx, copyKey, &corev1.Secret{})
		return err == nil, client.IgnoreNotFound(err)
	}, func() string { return "the new manager did not copy the connector's credentials into " + credentialsNS }))
	var earlier corev1.SecretList
	require.NoError(t, c.List(ctx, &earlier, client.InNamespace(productNS), mirrored))
	assert.NotEmpty(t, earlier.Items, "the earlier build's copies in %s (else this step tests nothing)", productNS)
	t.Logf("%d copies the earlier build left in %s", len(earlier.Items), productNS)

	for _, args := range [][]string{
		{"-n", productNS, "delete", "secret", "-l", access.LabelMirror + "=true"},
		{"-n", productNS, "delete", "role,rolebinding", "connectors-manager", "connectors-proxy", "--ignore-not-found"},
	} {
		stdout, stderr, err := kube.Kubectl(w.node.Env, args...)
		out, errOut := readerText(stdout), readerText(stderr)
		require.NoError(t, err, "kubectl %s: %s%s", strings.Join(args, " "), out, errOut)
		t.Logf("kubectl %s: %s", strings.Join(args, " "), out)
	}

	var left corev1.SecretList
	require.NoError(t, c.List(ctx, &left, client.InNamespace(productNS), mirrored))
	assert.Empty(t, left.Items, "copies of the connectors' credentials left in %s", productNS)
	require.NoError(t, c.Get(ctx, copyKey, &corev1.Secret{}), "the copy in %s stays", credentialsNS)
	for _, a := range []struct {
		account, verb, namespace string
		allowed                  bool
	}{
		{"connectors-proxy", "get", productNS, false},
		{"connectors-proxy", "list", productNS, false},
		{"connectors-manager", "create", productNS, false},
		{"connectors-manager", "delete", productNS, false},
		{"connectors-proxy", "get", credentialsNS, true},
		{"connectors-manager", "update", credentialsNS, true},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               kube.ServiceAccountUser(productNS, a.account),
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + productNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: a.namespace, Verb: a.verb, Resource: "secrets"},
		}}
		require.NoError(t, c.Create(ctx, sar))
		assert.Equal(t, a.allowed, sar.Status.Allowed, "%s may %s Secrets in %s", a.account, a.verb, a.namespace)
	}
	startTraffic(t, "after-cleanup", 2).wait(t)
}

// readerText is what r holds (kubectl's output), "" for none.
func readerText(r io.Reader) string {
	if r == nil {
		return ""
	}
	b, _ := io.ReadAll(r)
	return string(b)
}

// deploymentImages maps each product Deployment to its first container's image.
func deploymentImages(t *testing.T) map[string]string {
	t.Helper()
	var list appsv1.DeploymentList
	require.NoError(t, w.node.Client.List(context.Background(), &list, client.InNamespace(productNS)))
	out := map[string]string{}
	for _, d := range list.Items {
		out[d.Name] = d.Spec.Template.Spec.Containers[0].Image
	}
	return out
}

// overlayImages lists the images (name@digest) the overlay make images wrote in src pins.
func overlayImages(t *testing.T, src string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(src, e2eOverlay, "kustomization.yaml"))
	require.NoError(t, err)
	var k struct {
		Images []struct {
			NewName string `json:"newName"`
			Digest  string `json:"digest"`
		} `json:"images"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &k))
	var out []string
	for _, i := range k.Images {
		out = append(out, i.NewName+"@"+i.Digest)
	}
	require.NotEmpty(t, out, "no images in %s", e2eOverlay)
	return out
}

// crdIsThisCheckouts compares the served versions and schemas of the Connector CRD on the
// cluster with config/crd/bases.
func crdIsThisCheckouts(t *testing.T) {
	t.Helper()
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(root, "config/crd/bases/connectors.alauda.io_connectors.yaml"))
	require.NoError(t, err)
	var want apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.Unmarshal(raw, &want))
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	require.NoError(t, w.node.Client.Get(context.Background(), client.ObjectKey{Name: want.Name}, live))
	var got apiextensionsv1.CustomResourceDefinition
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(live.Object, &got))
	require.Len(t, got.Spec.Versions, len(want.Spec.Versions))
	for i := range want.Spec.Versions {
		assert.Equal(t, want.Spec.Versions[i].Name, got.Spec.Versions[i].Name)
		assert.True(t, equality.Semantic.DeepEqual(want.Spec.Versions[i].Schema, got.Spec.Versions[i].Schema),
			"the CRD's %s schema on the cluster is this checkout's", want.Spec.Versions[i].Name)
	}
}

// The node pull listener uses the host network, so a rollout (or a crash) leaves the node
// without it for a moment, and a pull in that moment is refused. The kubelet retries a failed
// pull with its back-off (10 s doubling to 5 min), so the pod starts once the listener is back.
// To make the gap certain rather than lucky, the listener's DaemonSet is held off the node (a
// node selector nothing matches) while a Job pulls, then released.
func nodeListenerRestart(t *testing.T) {
	ctx := context.Background()
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: nodeNS, Name: "connectors-node"}}
	hold := func(on bool) {
		value := "null"
		if on {
			value = `"true"`
		}
		patch := []byte(`{"spec":{"template":{"spec":{"nodeSelector":{"day2.test/hold":` + value + `}}}}}`)
		require.NoError(t, w.node.Client.Patch(ctx, ds, client.RawPatch(types.MergePatchType, patch)))
	}
	healthy := func() bool {
		resp, err := http.Get("http://" + pullHost + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	image, digest := uniqueImage(t, "listener-gap")
	hold(true)
	t.Cleanup(func() { hold(false) })
	require.NoError(t, waitForEvery(ctx, 50*time.Millisecond, 2*time.Minute, func() (bool, error) { return !healthy(), nil }), "the listener never went away")
	gapStart := time.Now()
	job := createJob(t, jobSpec{namespace: nsA, name: "listener-gap", image: image, connector: connectorName, pullPolicy: corev1.PullAlways,
		script: `echo "ran $DAY2_RUN"`})
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
		pod, ok := jobPod(ctx, t, job)
		return ok && pullFailed(pod), nil
	}, func() string { return "the pull during the gap did not fail: " + podSummary(ctx, w.node.Client, nsA) }))
	hold(false)
	require.NoError(t, waitForEvery(ctx, 50*time.Millisecond, 2*time.Minute, func() (bool, error) { return healthy(), nil }), "the listener never came back")
	t.Logf("node listener away for %.1fs", time.Since(gapStart).Seconds())
	res := awaitJob(t, job, 6*time.Minute, false)
	require.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	assert.Contains(t, res.pod.Status.ContainerStatuses[0].ImageID, digest)
	assert.Contains(t, res.events, "Failed to pull image", "the pull in the gap failed and the kubelet retried it")
	t.Logf("pod events:\n%s", res.events)
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) { return w.product.workloadsReady(ctx) }, nil))
}
