package policies

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// mutatedPod is a pod as the webhook leaves it (its golden file), as the kubelet and the API
// server then fill it in: scheduled, running, with an address, managedFields and an ephemeral
// container.
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
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.1.2.3", PodIPs: []corev1.PodIP{{IP: "10.1.2.3"}}}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
	return &pod
}

// A marked pod keeps what identification by address and the node pull rule read, and a pull
// for each image the webhook rewrote.
func TestMarkedPodOfKeepsWhatDecisionsRead(t *testing.T) {
	pod := mutatedPod(t)
	m := MarkedPodOf(pod)
	assert.Equal(t, &MarkedPod{
		Namespace: pod.Namespace, Name: pod.Name, UID: "uid-1", ServiceAccount: "builder", Node: "node-1", IP: "10.1.2.3",
		Phase: corev1.PodRunning, Marked: true, ConnectorAnnotation: "harbor", StatusConnectors: []string{"team-a/harbor"},
		Pulls: m.Pulls,
	}, m)
	require.NotEmpty(t, m.Pulls)
	var rewritten int
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if img, err := ParseImage(c.Image); err == nil {
			if ref, repo, ok := ParseProxyPath(img.Path); ok {
				assert.Contains(t, m.Pulls, ConnectorPull{Connector: ref, Repository: repo}, c.Name)
				rewritten++
			}
		}
	}
	assert.Len(t, m.Pulls, rewritten, "one pull per rewritten image, none for the others")
	ref := ConnectorRef{Namespace: "team-a", Name: "harbor"}
	assert.True(t, PodNeedsPull(m, PullRequest{Node: "node-1", Connector: ref, Repository: "team/app"}), "the rewritten app image justifies its pull")
	assert.False(t, PodNeedsPull(m, PullRequest{Node: "node-2", Connector: ref, Repository: "team/app"}))
	assert.True(t, m.Active())
}

// A hostNetwork pod has no address of its own to be identified by; an ephemeral container's
// hand-written proxy path is a pull the pod makes; a status record that does not parse names no
// connector; a pod being deleted or finished is not active.
func TestMarkedPodOfEdges(t *testing.T) {
	pod := mutatedPod(t)
	pod.Spec.HostNetwork = true
	pod.Annotations[AnnotationStatus] = "{not json"
	pod.Spec.EphemeralContainers[0].Image = "127.0.0.1:5050/namespaces/team-a/connectors/harbor/team/debug:v1"
	pod.Labels[LabelProxyInjected] = "false"
	m := MarkedPodOf(pod)
	assert.Empty(t, m.IP)
	assert.Nil(t, m.StatusConnectors)
	assert.False(t, m.Marked)
	assert.Contains(t, m.Pulls, ConnectorPull{Connector: ConnectorRef{Namespace: "team-a", Name: "harbor"}, Repository: "team/debug"})

	now := metav1.Now()
	pod.DeletionTimestamp = &now
	assert.False(t, MarkedPodOf(pod).Active())
	pod.DeletionTimestamp = nil
	pod.Status.Phase = corev1.PodSucceeded
	assert.False(t, MarkedPodOf(pod).Active())
	pod.Status.Phase = corev1.PodPending
	assert.True(t, MarkedPodOf(pod).Active())
}
