// Package podindex is the proxy's view of the pods the webhook marked: a compact
// policies.MarkedPod per pod, indexed by address, by node and by name, fed by a reflector that
// watches only marked pods. An informer cache would hold each pod object (a trimmed one is still
// 2 to 3 KiB, with its indexes' sets) and copy it on reads; this holds a few hundred bytes per pod
// and hands out the immutable MarkedPod itself (README "Scale").
package podindex

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/alauda/harbor-connector/policies"
)

// Index holds the marked pods. It is the reflector's store (cache.TransformingStore): a watch-list
// streams pods through Transformer one at a time, so no list of whole pods is ever held.
type Index struct {
	lw     toolscache.ListerWatcher
	synced atomic.Bool

	mu     sync.RWMutex
	byName map[podName]*policies.MarkedPod
	byIP   map[string]*policies.MarkedPod
	// shared holds the pods beyond the first that claim an address (a conflict the readers
	// refuse): rare, so kept apart rather than making every address a slice.
	shared map[string][]*policies.MarkedPod
	byNode map[string]map[podName]*policies.MarkedPod

	strings interner
}

// podName is a pod's namespace and name: a map key that costs no concatenated string per pod.
type podName struct{ namespace, name string }

// The manager starts it on every replica, and the reflector feeds it.
var (
	_ manager.LeaderElectionRunnable = (*Index)(nil)
	_ toolscache.TransformingStore   = (*Index)(nil)
)

// Marked selects the pods the webhook marked: the index's watch, and the proxy's live reads of
// what the index does not hold yet.
var Marked = labels.SelectorFromSet(labels.Set{policies.LabelProxyInjected: "true"})

// New watches the marked pods through clientset (give it a protobuf config: the initial list is
// every marked pod in the cluster).
func New(clientset kubernetes.Interface) *Index {
	return NewFromListWatch(toolscache.NewFilteredListWatchFromClient(clientset.CoreV1().RESTClient(), "pods", metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = Marked.String() }))
}

// NewFromListWatch watches the pods lw lists.
func NewFromListWatch(lw toolscache.ListerWatcher) *Index {
	i := &Index{lw: lw}
	i.reset(nil)
	return i
}

// Start runs the reflector until ctx ends (manager.Runnable).
func (i *Index) Start(ctx context.Context) error {
	r := toolscache.NewReflectorWithOptions(i.lw, &corev1.Pod{}, i, toolscache.ReflectorOptions{Name: "marked pods"})
	r.RunWithContext(ctx)
	return nil
}

// NeedLeaderElection is false: every proxy replica serves, so each holds the index
// (manager.LeaderElectionRunnable).
func (i *Index) NeedLeaderElection() bool { return false }

// HasSynced reports whether the initial list is in.
func (i *Index) HasSynced() bool { return i.synced.Load() }

// WithIP returns the pods holding ip (more than one is a conflict for the caller to refuse).
func (i *Index) WithIP(ip string) []*policies.MarkedPod {
	i.mu.RLock()
	defer i.mu.RUnlock()
	p, ok := i.byIP[ip]
	if !ok {
		return nil
	}
	return append([]*policies.MarkedPod{p}, i.shared[ip]...)
}

// OnNode returns the pods scheduled on node.
func (i *Index) OnNode(node string) []*policies.MarkedPod {
	i.mu.RLock()
	defer i.mu.RUnlock()
	pods := i.byNode[node]
	out := make([]*policies.MarkedPod, 0, len(pods))
	for _, p := range pods {
		out = append(out, p)
	}
	return out
}

// Get returns the pod namespace/name, nil when the index has none.
func (i *Index) Get(namespace, name string) *policies.MarkedPod {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.byName[podName{namespace, name}]
}

// Len is the number of pods held.
func (i *Index) Len() int {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return len(i.byName)
}

// Transformer reduces each pod the watch-list streams before the reflector's temporary store
// keeps it (cache.TransformingStore).
func (i *Index) Transformer() toolscache.TransformFunc {
	return func(obj any) (any, error) {
		if pod, ok := obj.(*corev1.Pod); ok {
			return i.reduce(pod), nil
		}
		return obj, nil
	}
}

// Add implements cache.ReflectorStore.
func (i *Index) Add(obj any) error {
	if p := i.markedPod(obj); p != nil {
		i.mu.Lock()
		defer i.mu.Unlock()
		i.put(p)
	}
	return nil
}

// Update implements cache.ReflectorStore.
func (i *Index) Update(obj any) error { return i.Add(obj) }

// Delete implements cache.ReflectorStore: by name, without reducing the deleted pod.
func (i *Index) Delete(obj any) error {
	var k podName
	switch o := obj.(type) {
	case *policies.MarkedPod:
		k = podName{o.Namespace, o.Name}
	case *corev1.Pod:
		k = podName{o.Namespace, o.Name}
	default:
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.remove(k)
	return nil
}

// Replace implements cache.ReflectorStore: the initial list, and every relist after a watch
// expired.
func (i *Index) Replace(objs []any, _ string) error {
	pods := make([]*policies.MarkedPod, 0, len(objs))
	for _, obj := range objs {
		if p := i.markedPod(obj); p != nil {
			pods = append(pods, p)
		}
	}
	i.mu.Lock()
	i.reset(pods)
	i.mu.Unlock()
	i.synced.Store(true)
	return nil
}

// Resync implements cache.ReflectorStore; there is nothing to resync.
func (i *Index) Resync() error { return nil }

// reset replaces the contents with pods (i.mu held, or i not yet shared).
func (i *Index) reset(pods []*policies.MarkedPod) {
	i.byName = make(map[podName]*policies.MarkedPod, len(pods))
	i.byIP = make(map[string]*policies.MarkedPod, len(pods))
	i.shared = map[string][]*policies.MarkedPod{}
	i.byNode = map[string]map[podName]*policies.MarkedPod{}
	for _, p := range pods {
		i.put(p)
	}
}

// put stores p in place of any pod of its name (i.mu held).
func (i *Index) put(p *policies.MarkedPod) {
	k := podName{p.Namespace, p.Name}
	i.remove(k)
	i.byName[k] = p
	if p.IP != "" {
		if _, taken := i.byIP[p.IP]; taken {
			i.shared[p.IP] = append(i.shared[p.IP], p)
		} else {
			i.byIP[p.IP] = p
		}
	}
	if p.Node != "" {
		if i.byNode[p.Node] == nil {
			i.byNode[p.Node] = map[podName]*policies.MarkedPod{}
		}
		i.byNode[p.Node][k] = p
	}
}

// remove drops the pod named k (i.mu held).
func (i *Index) remove(k podName) {
	old, ok := i.byName[k]
	if !ok {
		return
	}
	delete(i.byName, k)
	if old.IP != "" {
		i.removeAddress(old)
	}
	if old.Node != "" {
		delete(i.byNode[old.Node], k)
		if len(i.byNode[old.Node]) == 0 {
			delete(i.byNode, old.Node)
		}
	}
}

// removeAddress drops old from its address, promoting a pod that shares it (i.mu held).
func (i *Index) removeAddress(old *policies.MarkedPod) {
	others := i.shared[old.IP]
	if i.byIP[old.IP] == old {
		if len(others) == 0 {
			delete(i.byIP, old.IP)
			return
		}
		i.byIP[old.IP], others = others[0], others[1:]
	} else {
		others = slices.DeleteFunc(slices.Clone(others), func(p *policies.MarkedPod) bool { return p == old })
	}
	if len(others) == 0 {
		delete(i.shared, old.IP)
	} else {
		i.shared[old.IP] = others
	}
}

// markedPod is obj as a MarkedPod: already reduced by Transformer (a watch-list), or a pod from
// a watch event or a paginated list (a reflector hands its store nothing else).
func (i *Index) markedPod(obj any) *policies.MarkedPod {
	switch o := obj.(type) {
	case *policies.MarkedPod:
		return o
	case *corev1.Pod:
		return i.reduce(o)
	}
	return nil
}

// reduce is policies.MarkedPodOf with the strings pods repeat shared.
func (i *Index) reduce(pod *corev1.Pod) *policies.MarkedPod {
	return i.strings.share(policies.MarkedPodOf(pod))
}
