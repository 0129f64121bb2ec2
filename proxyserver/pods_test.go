package proxyserver

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/alauda/harbor-connector/policies"
)

// mutatedPod is a pod as the webhook leaves it (its golden file), as the kubelet and the API
// server then fill it in: scheduled, running, with an address and managedFields.
func mutatedPod(t *testing.T) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile("../webhook/testdata/pods/init-and-sidecars.golden.yaml")
	require.NoError(t, err)
	var golden struct {
		Object corev1.Pod `json:"object"`
	}
	require.NoError(t, yaml.Unmarshal(b, &golden))
	pod := golden.Object
	pod.UID, pod.ResourceVersion = "uid-1", "42"
	pod.Spec.NodeName, pod.Spec.ServiceAccountName = "node-1", "builder"
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.2.3", PodIPs: []corev1.PodIP{{IP: "10.1.2.3"}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{"f:conditions":{},"f:podIP":{},"f:podIPs":{},"f:phase":{}}}`)}}}
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
	return &pod
}

// The cache keeps of a pod what the proxy decides from, and the decisions come out the same:
// identification by address and the node pull rule, for each image the pod names.
func TestTrimPodKeepsWhatDecisionsRead(t *testing.T) {
	full := mutatedPod(t)
	out, err := trimPod(full.DeepCopy())
	require.NoError(t, err)
	trimmed := out.(*corev1.Pod)

	assert.Equal(t, indexPodIP(full), indexPodIP(trimmed))
	assert.Equal(t, indexPodNode(full), indexPodNode(trimmed))
	for _, p := range []*corev1.Pod{full, trimmed} {
		assert.Equal(t, "true", p.Labels[policies.LabelProxyInjected])
		assert.Equal(t, "harbor", p.Annotations[policies.AnnotationConnector])
		assert.Equal(t, "builder", p.Spec.ServiceAccountName)
		assert.Equal(t, corev1.PodRunning, p.Status.Phase)
		assert.False(t, p.Spec.HostNetwork)
	}
	assert.Equal(t, full.Name, trimmed.Name)
	assert.Equal(t, full.Namespace, trimmed.Namespace)
	assert.Equal(t, full.UID, trimmed.UID)
	assert.Equal(t, full.ResourceVersion, trimmed.ResourceVersion)

	ref := policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}
	checked := 0
	for _, image := range append(podImageList(full), "127.0.0.1:5050/namespaces/team-a/connectors/harbor/team/other:v1") {
		img, err := policies.ParseImage(image)
		if err != nil {
			continue
		}
		_, repo, ok := policies.ParseProxyPath(img.Path)
		if !ok {
			repo = "team/app"
		}
		for _, node := range []string{"node-1", "node-2"} {
			req := policies.PullRequest{Node: node, Connector: ref, Repository: repo}
			assert.Equal(t, policies.PodNeedsPull(full, req), policies.PodNeedsPull(trimmed, req), "%s on %s", repo, node)
			checked++
		}
	}
	assert.Greater(t, checked, 4)
	assert.True(t, policies.PodNeedsPull(trimmed, policies.PullRequest{Node: "node-1", Connector: ref, Repository: "team/app"}), "the rewritten app image justifies its pull")

	fullJSON, _ := json.Marshal(full)
	trimmedJSON, _ := json.Marshal(trimmed)
	assert.Less(t, len(trimmedJSON)*3, len(fullJSON), "the cached pod is a third of the pod or less (%d of %d bytes)", len(trimmedJSON), len(fullJSON))
	assert.Empty(t, trimmed.ManagedFields)
	assert.Empty(t, trimmed.Spec.Volumes)
	for _, c := range trimmed.Spec.Containers {
		assert.Empty(t, c.Env)
	}
}

// A deleted pod's tombstone, or anything that is not a pod, passes unchanged; a status record
// that does not parse is dropped, which the node pull rule makes of it anyway.
func TestTrimPodOtherObjects(t *testing.T) {
	other := &corev1.ConfigMap{}
	out, err := trimPod(other)
	require.NoError(t, err)
	assert.Same(t, other, out)

	pod := mutatedPod(t)
	pod.Annotations[policies.AnnotationStatus] = "{not json"
	out, err = trimPod(pod)
	require.NoError(t, err)
	assert.NotContains(t, out.(*corev1.Pod).Annotations, policies.AnnotationStatus)
}

func podImageList(p *corev1.Pod) []string {
	var out []string
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		out = append(out, c.Image)
	}
	return out
}
