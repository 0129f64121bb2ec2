package podindex

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/alauda/harbor-connector/policies"
)

func pod(name, node, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name, UID: "uid-" + types.UID(name), Labels: map[string]string{policies.LabelProxyInjected: "true"}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
}

func names(pods []*policies.MarkedPod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// The index follows what the reflector tells it: an update moves a pod to its new address and
// node and leaves nothing under the old ones; a delete drops it; a relist
// replaces everything.
func TestIndexFollowsTheWatch(t *testing.T) {
	i := NewFromListWatch(nil)
	assert.False(t, i.HasSynced())
	transform := i.Transformer()
	streamed, err := transform(pod("a", "node-1", "10.0.0.1"))
	require.NoError(t, err)
	require.IsType(t, &policies.MarkedPod{}, streamed, "a watch-list's pods are reduced as they stream")
	require.NoError(t, i.Replace([]any{streamed, pod("b", "node-1", "10.0.0.2")}, "1"))
	assert.True(t, i.HasSynced())
	assert.ElementsMatch(t, []string{"a", "b"}, names(i.OnNode("node-1")))
	assert.Equal(t, []string{"a"}, names(i.WithIP("10.0.0.1")))

	require.NoError(t, i.Update(pod("a", "node-2", "10.0.0.9")))
	assert.Equal(t, []string{"b"}, names(i.OnNode("node-1")))
	assert.Equal(t, []string{"a"}, names(i.OnNode("node-2")))
	assert.Empty(t, i.WithIP("10.0.0.1"), "the old address no longer names the pod")
	assert.Equal(t, "node-2", i.Get("team-a", "a").Node)

	require.NoError(t, i.Add(pod("c", "node-2", "10.0.0.2")))
	assert.ElementsMatch(t, []string{"b", "c"}, names(i.WithIP("10.0.0.2")), "two pods claiming one address are both returned, for the caller to refuse")

	require.NoError(t, i.Delete(pod("b", "node-1", "10.0.0.2")))
	assert.Empty(t, i.OnNode("node-1"))
	assert.Equal(t, []string{"c"}, names(i.WithIP("10.0.0.2")))
	require.NoError(t, i.Delete(pod("c", "", "")))
	assert.Empty(t, i.WithIP("10.0.0.2"), "a delete drops the pod by name, whatever the deleted copy says")
	assert.Nil(t, i.Get("team-a", "c"))

	require.NoError(t, i.Replace([]any{pod("d", "node-3", "10.0.0.4")}, "2"))
	assert.Equal(t, 1, i.Len())
	assert.Nil(t, i.Get("team-a", "a"))
	assert.Empty(t, i.OnNode("node-2"))
	assert.Empty(t, i.WithIP("10.0.0.9"))
}

// Readers get slices of their own: a later update does not change what a reader holds.
func TestIndexReadsAreStable(t *testing.T) {
	i := NewFromListWatch(nil)
	require.NoError(t, i.Add(pod("a", "node-1", "10.0.0.1")))
	got := i.WithIP("10.0.0.1")
	first := got[0]
	require.NoError(t, i.Add(pod("b", "node-1", "10.0.0.1")))
	require.NoError(t, i.Update(pod("a", "node-1", "10.0.0.5")))
	assert.Len(t, got, 1)
	assert.Same(t, first, got[0])
	assert.Equal(t, "10.0.0.1", got[0].IP, "the MarkedPod a reader holds is never changed; an update replaces it")
}

// Of three pods claiming one address, removing the second leaves the first and the third.
func TestIndexAddressConflictsUnwind(t *testing.T) {
	i := NewFromListWatch(nil)
	for _, name := range []string{"a", "b", "c"} {
		require.NoError(t, i.Add(pod(name, "node-1", "10.0.0.1")))
	}
	assert.Equal(t, []string{"a", "b", "c"}, names(i.WithIP("10.0.0.1")))
	require.NoError(t, i.Delete(pod("b", "node-1", "10.0.0.1")))
	assert.Equal(t, []string{"a", "c"}, names(i.WithIP("10.0.0.1")))
	require.NoError(t, i.Delete(pod("a", "node-1", "10.0.0.1")))
	assert.Equal(t, []string{"c"}, names(i.WithIP("10.0.0.1")))
}

// Pods share one copy of the strings they repeat (namespace, node, the pulls' connector and
// repository).
func TestIndexSharesRepeatedStrings(t *testing.T) {
	i := NewFromListWatch(nil)
	withImage := func(name string) *corev1.Pod {
		p := pod(name, "node-1", "10.0.0."+name)
		p.Spec.Containers = []corev1.Container{{Name: "app", Image: "127.0.0.1:5050/namespaces/team-a/connectors/harbor/team/app:v1"}}
		return p
	}
	require.NoError(t, i.Add(withImage("1")))
	require.NoError(t, i.Add(withImage("2")))
	a, b := i.Get("team-a", "1"), i.Get("team-a", "2")
	require.Len(t, a.Pulls, 1)
	assert.Equal(t, policies.ConnectorPull{Connector: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, Repository: "team/app"}, b.Pulls[0])
	for what, pair := range map[string][2]string{
		"namespace":  {a.Namespace, b.Namespace},
		"node":       {a.Node, b.Node},
		"repository": {a.Pulls[0].Repository, b.Pulls[0].Repository},
		"connector":  {a.Pulls[0].Connector.Name, b.Pulls[0].Connector.Name},
	} {
		assert.Same(t, unsafe.StringData(pair[0]), unsafe.StringData(pair[1]), what)
	}
}
