package scale_test

import (
	"context"
	"encoding/json"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
)

// podCost is what one marked pod costs when held decoded, measured in the benchmark's own
// process: the heap of every marked pod as the API server lists them (JSON), then without
// managedFields (what an informer cache of pods would hold at best), then reduced as the proxy's
// index holds them (policies.MarkedPodOf; the index's maps come on top). Also one pod's size as
// JSON and its managedFields' share. It explains the proxy's resident set.
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
	reduced := make([]*policies.MarkedPod, len(list.Items))
	for i := range list.Items {
		reduced[i] = policies.MarkedPodOf(&list.Items[i])
	}
	list.Items = nil
	c.reduced = (heapAlloc() - base) / float64(c.pods)
	runtime.KeepAlive(reduced)
	return c
}

func heapAlloc() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc)
}
