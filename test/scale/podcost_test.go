package scale_test

import (
	"context"
	"encoding/json"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
)

// podCost is what one marked pod costs when held decoded, measured in the benchmark's own
// process with the same types the proxy's informer holds: the heap of every marked pod as the
// API server lists them (JSON, as the proxy's client reads them), then without managedFields,
// then reduced to the fields the proxy's decisions read (policies.PodNeedsPull, the address
// lookup, the forward identity). Also one pod's size as JSON and its managedFields' share. It
// explains the proxy's resident set; the reduction is an estimate, not product behaviour.
type podCost struct {
	pods                           int
	full, noManagedFields, reduced float64 // heap bytes per pod
	jsonBytes, managedFieldsBytes  int
}

func (w *world) podCost(b *testing.B) podCost {
	ctx := context.Background()
	base := heapAlloc()
	var list corev1.PodList
	must(b, w.k8s.List(ctx, &list, client.MatchingLabels{policies.LabelProxyInjected: "true"}))
	c := podCost{pods: len(list.Items)}
	c.full = (heapAlloc() - base) / float64(c.pods)
	raw, _ := json.Marshal(list.Items[0])
	mf, _ := json.Marshal(list.Items[0].ManagedFields)
	c.jsonBytes, c.managedFieldsBytes = len(raw), len(mf)
	for i := range list.Items {
		list.Items[i].ManagedFields = nil
	}
	c.noManagedFields = (heapAlloc() - base) / float64(c.pods)
	reduced := make([]corev1.Pod, len(list.Items))
	for i := range list.Items {
		reduced[i] = reduce(&list.Items[i])
	}
	list.Items = nil
	c.reduced = (heapAlloc() - base) / float64(c.pods)
	runtime.KeepAlive(reduced)
	return c
}

// reduce keeps what the proxy reads of a marked pod.
func reduce(p *corev1.Pod) corev1.Pod {
	out := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp, Annotations: map[string]string{}},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork, ServiceAccountName: p.Spec.ServiceAccountName},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	for _, k := range []string{policies.AnnotationConnector, policies.AnnotationStatus} {
		if v, ok := p.Annotations[k]; ok {
			out.Annotations[k] = v
		}
	}
	for _, c := range p.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	return out
}

func heapAlloc() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc)
}
