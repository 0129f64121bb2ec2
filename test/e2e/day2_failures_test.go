//go:build e2e && day2

package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
)

// A proxy replica is evicted, as a node drain does, while Jobs pull and push through the node
// path, the forward proxy and the reverse address. The PodDisruptionBudget refuses to evict the
// other replica until the replacement is Ready; the Service stops sending new connections to
// the evicted one at once (it keeps serving those for its preStop moment, then drains); every
// Job completes with the right digests.
func proxyPodLoss(t *testing.T) {
	ctx := context.Background()
	tr := startTraffic(t, "pod-loss", 15)
	tr.running(t)
	pods := proxyPods(t)
	require.Len(t, pods, 2)
	victim, other := pods[0], pods[1]
	require.NoError(t, evict(ctx, victim), "the PodDisruptionBudget allows evicting one replica of two")
	err := evict(ctx, other)
	require.Error(t, err, "the PodDisruptionBudget must refuse evicting the last Ready replica")
	assert.Contains(t, err.Error(), "disruption budget")

	// New connections go to the other replica at once: the Service's EndpointSlice marks the
	// evicted pod not ready (terminating) within seconds ...
	require.NoError(t, waitFor(ctx, 10*time.Second, func() (bool, error) { return !endpointReady(t, victim.Name), nil },
		func() string { return "the evicted proxy pod stayed a ready endpoint" }))
	// ... and fresh connections to the Service all get an answer while it terminates.
	svc := &corev1.Service{}
	require.NoError(t, w.node.Client.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, svc))
	for i := 0; i < 20; i++ {
		tr := &http.Transport{DisableKeepAlives: true}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + net.JoinHostPort(svc.Spec.ClusterIP, "3128") + "/")
		require.NoError(t, err, "connection %d to the proxy Service during the eviction", i)
		resp.Body.Close()
	}
	retried := tr.wait(t)
	t.Logf("Jobs retried %d pod(s) after the eviction", retried)
	require.NoError(t, waitFor(ctx, 3*time.Minute, func() (bool, error) { return w.product.workloadsReady(ctx) }, nil))
}

func proxyPods(t *testing.T) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	require.NoError(t, w.node.Client.List(context.Background(), &pods, client.InNamespace(productNS), client.MatchingLabels{"app.kubernetes.io/name": "connectors-proxy"}))
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func evict(ctx context.Context, pod corev1.Pod) error {
	return w.node.Clientset.PolicyV1().Evictions(pod.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}})
}

// endpointReady reports whether the proxy Service's EndpointSlices list pod as ready.
func endpointReady(t *testing.T, pod string) bool {
	var slices discoveryv1.EndpointSliceList
	require.NoError(t, w.node.Client.List(context.Background(), &slices, client.InNamespace(productNS), client.MatchingLabels{discoveryv1.LabelServiceName: "connectors-proxy"}))
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.TargetRef != nil && e.TargetRef.Name == pod && e.Conditions.Ready != nil && *e.Conditions.Ready {
				return true
			}
		}
	}
	return false
}

// With no manager replica, admission of annotated Jobs and Pods is refused (failurePolicy:
// Fail) with an error naming the connectors webhook; unannotated workloads, and pods of the
// product's own namespaces, are admitted as usual; admission recovers with a replica.
func managerDown(t *testing.T) {
	ctx := context.Background()
	scale := func(replicas int32) {
		_, err := w.node.Clientset.AppsV1().Deployments(productNS).UpdateScale(ctx, "connectors-manager",
			&autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: productNS, Name: "connectors-manager"}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}, metav1.UpdateOptions{})
		require.NoError(t, err)
	}
	scale(0)
	t.Cleanup(func() { scale(2) })
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
		var pods corev1.PodList
		err := w.node.Client.List(ctx, &pods, client.InNamespace(productNS), client.MatchingLabels{"app.kubernetes.io/name": "connectors-manager"})
		return len(pods.Items) == 0, err
	}, func() string { return "manager pods still exist" }))

	job := jobSpec{namespace: nsA, name: "manager-down", image: w.appImage(), connector: connectorName, script: "true"}.build()
	err := w.node.Client.Create(ctx, job)
	require.Error(t, err, "an annotated Job must be refused while the webhook is down")
	t.Logf("what the user sees: %v", err)
	assert.Contains(t, err.Error(), "connectors.cpaas.io", "the error names the connectors webhook")
	assert.Contains(t, err.Error(), "connectors-webhook", "the error names the webhook's Service")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "manager-down", Annotations: job.Annotations}, Spec: job.Spec.Template.Spec}
	require.Error(t, w.node.Client.Create(ctx, pod), "an annotated bare Pod must be refused too")

	plain := runJob(t, jobSpec{namespace: nsA, name: "manager-down-plain", image: localCraneImage, pullPolicy: corev1.PullNever, script: "echo unannotated-ran"})
	assert.True(t, plain.succeeded, "an unannotated Job runs as usual: events:\n%s", plain.events)

	// The product's own pods are never sent to the webhook: the node listener's pod, deleted,
	// comes back.
	var nodePods corev1.PodList
	require.NoError(t, w.node.Client.List(ctx, &nodePods, client.InNamespace(nodeNS), client.MatchingLabels{"app.kubernetes.io/name": "connectors-node"}))
	require.Len(t, nodePods.Items, 1)
	require.NoError(t, w.node.Client.Delete(ctx, &nodePods.Items[0]))
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
		var ds appsv1.DaemonSet
		if err := w.node.Client.Get(ctx, client.ObjectKey{Namespace: nodeNS, Name: "connectors-node"}, &ds); err != nil {
			return false, err
		}
		var pods corev1.PodList
		if err := w.node.Client.List(ctx, &pods, client.InNamespace(nodeNS), client.MatchingLabels{"app.kubernetes.io/name": "connectors-node"}); err != nil {
			return false, err
		}
		return len(pods.Items) == 1 && pods.Items[0].UID != nodePods.Items[0].UID && ds.Status.NumberReady == 1, nil
	}, func() string { return "the node listener's pod was not recreated while the manager was down" }))

	scale(2)
	require.NoError(t, waitFor(ctx, 3*time.Minute, func() (bool, error) { return w.product.workloadsReady(ctx) }, nil))
	res := runJob(t, jobSpec{namespace: nsA, name: "manager-back", image: w.appImage(), connector: connectorName, script: "echo admitted-again"})
	assert.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
}

// Harbor goes away: the Connector turns not Ready with reason Unreachable, workloads get an
// UNAVAILABLE error that says what to do, and when Harbor returns everything recovers with no
// restart of any product pod.
func harborDownAndBack(t *testing.T) {
	ctx := context.Background()
	// Operators tune how soon a failing registry shows on the Connector; the default re-probes a
	// Ready Connector every 5 minutes.
	probeEvery(t, "20s", "10s")
	restarts := productPodRestarts(t)
	nodeImage, _ := uniqueImage(t, "harbor-down")

	require.NoError(t, w.harbor.SetDown(true))
	t.Cleanup(func() { _ = w.harbor.SetDown(false) })
	conn := &v1alpha1.Connector{}
	key := client.ObjectKey{Namespace: nsA, Name: connectorName}
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
		if err := w.node.Client.Get(ctx, key, conn); err != nil {
			return false, err
		}
		ready := metaCondition(conn.Status.Conditions, v1alpha1.ConditionReady)
		return ready != nil && ready.Status == metav1.ConditionFalse, nil
	}, func() string {
		return fmt.Sprintf("the Connector stayed Ready with Harbor down: %+v", conn.Status.Conditions)
	}))
	ready := metaCondition(conn.Status.Conditions, v1alpha1.ConditionReady)
	t.Logf("Connector while Harbor is down: %s: %s", ready.Reason, ready.Message)
	assert.Equal(t, v1alpha1.ReasonUnreachable, ready.Reason)
	// What the ConnectorNotReady alert reads (config/prometheus/rules.yaml).
	require.NoError(t, waitFor(ctx, time.Minute, func() (bool, error) {
		return strings.Contains(managerMetrics(t), `connectors_connector_ready{name="harbor",namespace="team-a",reason="Unreachable"} 0`), nil
	}, func() string { return "the elected manager does not export the Connector as not Ready" }))

	// What a workload sees, through the forward proxy and the reverse address.
	// (crane from the node's own copy: a pull from Harbor would fail now.)
	res := runJob(t, jobSpec{namespace: nsA, name: "harbor-down", image: localCraneImage, pullPolicy: corev1.PullNever, connector: connectorName, script: fmt.Sprintf(
		`crane digest %s 2>&1 || true
echo "---- reverse"
crane digest %s 2>&1 || true`, w.appImage(), reverseRef("app:v1"))})
	require.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	t.Logf("what crane prints while Harbor is down:\n%s", res.logs)
	forward, reverse, ok := strings.Cut(res.logs, "---- reverse")
	require.True(t, ok)
	unavailable := "UNAVAILABLE: the registry of connector team-a/harbor is unavailable: it could not be reached; retry, and see the Connector's conditions"
	assert.Contains(t, forward, unavailable, "the forward proxy's answer")
	assert.Contains(t, reverse, unavailable, "the reverse address's answer")
	assert.NotContains(t, reverse, w.harbor.Host(), "the reverse address never shows the upstream's address")
	// The node path: the kubelet's pull fails and its event says the registry is unavailable.
	pull := runJob(t, jobSpec{namespace: nsA, name: "harbor-down-pull", image: nodeImage, connector: connectorName, pullPolicy: corev1.PullAlways, script: "true"})
	require.False(t, pull.succeeded)
	t.Logf("the kubelet's events while Harbor is down:\n%s", pull.events)
	assert.Contains(t, pull.events, "503 Service Unavailable")

	require.NoError(t, w.harbor.SetDown(false))
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
		if err := w.node.Client.Get(ctx, key, conn); err != nil {
			return false, err
		}
		ready := metaCondition(conn.Status.Conditions, v1alpha1.ConditionReady)
		return ready != nil && ready.Status == metav1.ConditionTrue, nil
	}, func() string { return fmt.Sprintf("the Connector did not recover: %+v", conn.Status.Conditions) }))
	startTraffic(t, "harbor-back", 2).wait(t)
	require.NoError(t, waitFor(ctx, time.Minute, func() (bool, error) {
		return strings.Contains(managerMetrics(t), `connectors_connector_ready{name="harbor",namespace="team-a",reason="Ready"} 1`), nil
	}, func() string { return "the elected manager does not export the Connector as Ready again" }))
	assert.Equal(t, restarts, productPodRestarts(t), "no product container restarted")
}

// probeEvery sets the manager's --probe-interval and --retry-interval (a JSON patch, as an
// operator's overlay would) and waits for the rollout.
func probeEvery(t *testing.T, probe, retry string) {
	t.Helper()
	ctx := context.Background()
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: productNS, Name: "connectors-manager"}}
	patch := fmt.Sprintf(`[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--probe-interval=%s"},
{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--retry-interval=%s"}]`, probe, retry)
	require.NoError(t, w.node.Client.Patch(ctx, d, client.RawPatch(types.JSONPatchType, []byte(patch))))
	require.NoError(t, waitFor(ctx, 3*time.Minute, func() (bool, error) { return w.product.workloadsReady(ctx) }, nil))
}

func metaCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}
