package policies

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodNeedsPull(t *testing.T) {
	req := PullRequest{Node: "n1", Connector: ConnectorRef{Namespace: "a", Name: "harbor"}, Repository: "team/app"}
	image := "127.0.0.1:5050/namespaces/a/connectors/harbor/team/app:v1"
	pod := func(mutate func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "a", Annotations: map[string]string{AnnotationStatus: `{"connectors":["a/harbor"]}`}},
			Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}, InitContainers: []corev1.Container{{Name: "i", Image: image}}},
			Status:     corev1.PodStatus{Phase: corev1.PodPending},
		}
		if mutate != nil {
			mutate(p)
		}
		return p
	}
	assert.True(t, PodNeedsPull(MarkedPodOf(pod(nil)), req), "an init container's rewritten image counts")
	assert.True(t, PodNeedsPull(MarkedPodOf(pod(func(p *corev1.Pod) {
		p.Spec.InitContainers[0].Image = "127.0.0.1:5050/namespaces/a/connectors/harbor/team/app@sha256:" + sha
	})), req), "by digest")
	for name, mutate := range map[string]func(*corev1.Pod){
		"other node":           func(p *corev1.Pod) { p.Spec.NodeName = "n2" },
		"finished":             func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"failed":               func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed },
		"no status annotation": func(p *corev1.Pod) { delete(p.Annotations, AnnotationStatus) },
		"marked for another":   func(p *corev1.Pod) { p.Annotations[AnnotationStatus] = `{"connectors":["a/other"]}` },
		"other repository": func(p *corev1.Pod) {
			p.Spec.InitContainers[0].Image = "127.0.0.1:5050/namespaces/a/connectors/harbor/team/app2:v1"
		},
		"other connector path": func(p *corev1.Pod) {
			p.Spec.InitContainers[0].Image = "127.0.0.1:5050/namespaces/b/connectors/harbor/team/app:v1"
		},
		"original image only": func(p *corev1.Pod) { p.Spec.InitContainers[0].Image = "harbor.example.com/team/app:v1" },
		"deleting":            func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now },
	} {
		assert.False(t, PodNeedsPull(MarkedPodOf(pod(mutate)), req), name)
	}
}

const sha = "0000000000000000000000000000000000000000000000000000000000000000"
