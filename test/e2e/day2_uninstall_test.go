//go:build e2e && day2

package e2e_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
)

// Namespace admins and editors manage Connectors and viewers read them, through the built-in
// roles the cluster's own controller-manager aggregates the install's ClusterRoles into.
func accessThroughBuiltInRoles(t *testing.T) {
	require.NoError(t, kube.CheckConnectorAccess(context.Background(), w.node.Config))
}

// make undeploy refuses while an annotated workload runs, naming it, and deletes nothing; once
// its owner removed it, undeploy leaves no product object, CSI registration, webhook
// configuration or node file behind, and keeps the CRD with every Connector.
func uninstall(t *testing.T) {
	ctx := context.Background()
	src, err := clients.RepoRoot()
	require.NoError(t, err)
	w.product.src = src
	job := createJob(t, jobSpec{namespace: nsA, name: "uninstall-blocker", image: w.appImage(), connector: connectorName, script: "sleep 600"})
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
		pod, ok := jobPod(ctx, t, job)
		return ok && pod.Status.Phase == corev1.PodRunning, nil
	}, func() string { return "the annotated Job never ran: " + podSummary(ctx, w.node.Client, nsA) }))

	err = w.product.make(ctx, "undeploy", "OVERLAY="+e2eOverlay)
	require.Error(t, err, "make undeploy must refuse while an annotated pod runs")
	t.Logf("what make undeploy says: %v", err)
	assert.Contains(t, err.Error(), nsA+"/uninstall-blocker")
	var hook admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, w.node.Client.Get(ctx, client.ObjectKey{Name: "connectors-proxy-inject"}, &hook), "a refused undeploy deletes nothing")

	require.NoError(t, w.node.Client.Delete(ctx, job, client.PropagationPolicy("Foreground")))
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
		var pods corev1.PodList
		err := w.node.Client.List(ctx, &pods, client.InNamespace(nsA), client.MatchingLabels{"batch.kubernetes.io/job-name": job.Name})
		return len(pods.Items) == 0, err
	}, func() string { return "the Job's pod did not go" }))
	require.NoError(t, w.product.make(ctx, "undeploy", "OVERLAY="+e2eOverlay))

	rendered, err := kube.Kustomize(w.node.Env, filepath.Join(src, "config/overlays/deploy"))
	require.NoError(t, err)
	left, err := kube.InstallLeftovers(ctx, w.node.Config, rendered, true)
	require.NoError(t, err)
	assert.Empty(t, left, "objects of the install left after make undeploy")
	nodeLeft, err := kube.NodeLeftovers(w.node.KubeletRoot)
	require.NoError(t, err)
	assert.Empty(t, nodeLeft, "files of the CSI driver left on the node")
	var conn v1alpha1.Connector
	assert.NoError(t, w.node.Client.Get(ctx, client.ObjectKey{Namespace: nsA, Name: connectorName}, &conn), "the Connector survives the uninstall")
}
