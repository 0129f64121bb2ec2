//go:build e2e && day2

package e2e_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/clients"
)

// The same upgrade with Helm (README "Install with Helm"): the earlier build installed again
// with kustomize (make deploy from its checkout), Jobs run, then this checkout's chart (make
// chart, from the overlay make images wrote) takes the install over with helm upgrade
// --install --take-ownership --force-conflicts, after make helm-adopt handed kubectl's fields to
// helm, while Jobs pull and push and new annotated Jobs
// are created: every Job completes with the right digests, no admission fails, and the objects
// now belong to the Helm release. The earlier build's copies of the credentials and its Roles in
// connectors-system are then removed as after the kustomize upgrade (removeEarlierCopies).
func helmUpgrade(t *testing.T) {
	ctx := context.Background()
	earlier := filepath.Join(w.work, "earlier")
	w.product.src = earlier
	require.NoError(t, w.product.make(ctx, "deploy", "OVERLAY="+e2eOverlay, "KUBELET_ROOT="+w.node.KubeletRoot), "the earlier build, installed again with kustomize")
	require.NoError(t, w.product.waitInstalled(ctx))
	startTraffic(t, "helm-before", 2).wait(t)

	src, err := clients.RepoRoot()
	require.NoError(t, err)
	w.product.src = src
	require.NoError(t, w.product.make(ctx, "chart", "OVERLAY="+e2eOverlay))
	helm := helmBinary(t)
	tr := startTraffic(t, "helm-upgrade", 10)
	tr.running(t)
	stop := make(chan struct{})
	admitted := admitDuring(t, "helm", stop)
	err = w.product.make(ctx, "helm-adopt", "OVERLAY="+e2eOverlay)
	require.NoError(t, err, "handing kubectl's fields to helm")
	err = w.product.run(ctx, "helm", helm, "upgrade", "--install", "harbor-connector", filepath.Join(src, "bin/chart/harbor-connector"),
		"--namespace", productNS, "--take-ownership", "--force-conflicts", "--set", "kubeletRoot="+w.node.KubeletRoot)
	if err == nil {
		err = w.product.waitInstalled(ctx)
	}
	close(stop)
	require.NoError(t, err, "helm upgrade over the kustomize install")
	jobs, errs := admitted()
	assert.Empty(t, errs, "admission refused annotated Jobs during the Helm upgrade")
	for _, job := range jobs {
		res := awaitJob(t, job, 5*time.Minute, false)
		assert.True(t, res.succeeded, "Job %s created during the Helm upgrade: events:\n%s\nlogs:\n%s", job.Name, res.events, res.logs)
	}
	tr.wait(t)

	pinned := overlayImages(t, src)
	for name, image := range deploymentImages(t) {
		assert.Contains(t, pinned, image, "Deployment %s runs the chart's image", name)
	}
	var d appsv1.Deployment
	require.NoError(t, w.node.Client.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &d))
	assert.Equal(t, "harbor-connector", d.Annotations["meta.helm.sh/release-name"], "the release owns the install now")
	// Nothing the earlier build set and this chart does not survives: the CSI driver's plugin
	// directory moved from plugins/connectors-csi to plugins, and only the new mount is left.
	var csi appsv1.DaemonSet
	require.NoError(t, w.node.Client.Get(ctx, client.ObjectKey{Namespace: nodeNS, Name: "connectors-csi"}, &csi))
	var mounts []string
	for _, m := range csi.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.Name == "plugin-dir" {
			mounts = append(mounts, m.MountPath)
		}
	}
	assert.Equal(t, []string{filepath.Join(w.node.KubeletRoot, "plugins")}, mounts, "the CSI driver's plugin-dir mounts after the Helm upgrade")
	crdIsThisCheckouts(t)
	// The chart does not hold the earlier build's Roles in connectors-system, so helm leaves them
	// (and the copies) as kubectl applied them: the same README "Upgrade" commands remove them.
	removeEarlierCopies(t)
}

// helmBinary is the helm test/tools/helm.sh builds from the module proxy.
func helmBinary(t *testing.T) string {
	t.Helper()
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	out, err := exec.Command(filepath.Join(root, "test/tools/helm.sh")).Output()
	require.NoError(t, err, "building helm")
	return strings.TrimSpace(string(out))
}
