package proxyserver

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/podindex"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// countingReader answers every List with nothing and counts the calls: an API server with no
// matching pod.
type countingReader struct {
	lists int
	// The resourceVersion of the last List and Get, and the last List's field selector.
	listRV, getRV, fields string
	// pods are what each List answers.
	pods []corev1.Pod
}

func (c *countingReader) Get(_ context.Context, _ client.ObjectKey, _ client.Object, opts ...client.GetOption) error {
	c.getRV = (&client.GetOptions{}).ApplyOptions(opts).AsGetOptions().ResourceVersion
	return nil
}

func (c *countingReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.lists++
	o := (&client.ListOptions{}).ApplyOptions(opts).AsListOptions()
	c.listRV, c.fields = o.ResourceVersion, o.FieldSelector
	if pods, ok := list.(*corev1.PodList); ok {
		pods.Items = c.pods
	}
	return nil
}

// Live reads are served from the API server's watch cache (resourceVersion "0"), never etcd,
// and keep the caller's selectors.
func TestLiveReadsReadTheWatchCache(t *testing.T) {
	api := &countingReader{}
	live := NewLiveReads(api, LiveReadsLimit{QPS: 100, Burst: 10})
	require.NoError(t, live.List(context.Background(), nil, client.MatchingFields{"spec.nodeName": "node-1"}))
	assert.Equal(t, "0", api.listRV)
	require.NoError(t, live.Get(context.Background(), client.ObjectKey{Name: "x"}, nil))
	assert.Equal(t, "0", api.getRV)
	opts := (&client.ListOptions{}).ApplyOptions([]client.ListOption{client.MatchingFields{"spec.nodeName": "node-1"}, fromWatchCache{}}).AsListOptions()
	assert.Equal(t, "spec.nodeName=node-1", opts.FieldSelector, "the selector survives")
	assert.Equal(t, "0", opts.ResourceVersion)
}

// A flood of misses reaches the API server only as often as the bucket allows; a refused read
// is reported as errLiveReadsLimited.
func TestLiveReadsAreRateLimited(t *testing.T) {
	api := &countingReader{}
	live := NewLiveReads(api, LiveReadsLimit{QPS: 0.001, Burst: 3})
	limited := 0
	for i := 0; i < 100; i++ {
		if err := live.List(context.Background(), nil); err != nil {
			require.ErrorIs(t, err, errLiveReadsLimited)
			limited++
		}
	}
	assert.Equal(t, 3, api.lists, "the burst, then nothing until the bucket refills")
	assert.Equal(t, 97, limited)
}

// emptyIndex is an index of marked pods that holds none.
func emptyIndex() *podindex.Index { return podindex.NewFromListWatch(nil) }

// An address no pod has, once the live reads are used up, is refused as a miss (not as an
// API server error), and costs the API server nothing.
func TestPodsByIPMissWhenLiveReadsAreUsedUp(t *testing.T) {
	api := &countingReader{}
	p := PodsByIP{Index: emptyIndex(), Live: NewLiveReads(api, LiveReadsLimit{QPS: 0.001, Burst: 1}), Wait: time.Millisecond}
	_, err := p.Pod(context.Background(), "10.1.2.3")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has address 10.1.2.3")
	_, err = p.Pod(context.Background(), "10.1.2.3")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has address 10.1.2.3", "a limited live read is a miss")
	assert.NotContains(t, err.Error(), "rate limited")
	assert.Equal(t, 1, api.lists, "the second miss did not reach the API server")
}

// A node pull no cached pod justifies, once the live reads are used up, is refused as such,
// with the refusal that names the node and the repository, not as an API server failure.
func TestNodePullRefusedWhenLiveReadsAreUsedUp(t *testing.T) {
	api := &countingReader{}
	n := &NodePulls{Pods: emptyIndex(), Live: NewLiveReads(api, LiveReadsLimit{QPS: 0.001, Burst: 1})}
	id := identity.Identity{Namespace: "connectors-node", ServiceAccount: "connectors-node", NodeName: "node-1"}
	route := Route{Connector: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, Repository: "team/app", Kind: KindManifest}
	for i := 0; i < 2; i++ {
		_, err := n.Authorize(context.Background(), id, nil, http.MethodGet, route)
		require.Error(t, err)
		assert.Equal(t, policies.NodePullRefusal(policies.PullRequest{Node: "node-1", Connector: route.Connector, Repository: "team/app"}), err.Error())
	}
	assert.Equal(t, 1, api.lists, "the second pull did not reach the API server")
}

// A node pull the index cannot justify asks the API server for the node's Pending marked pods
// alone (a pod the watch has not delivered yet is one whose images are being pulled for the
// first time), and such a pod justifies the pull.
func TestNodePullLiveReadFindsAPendingPod(t *testing.T) {
	ref := policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}
	pending := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "app", Labels: map[string]string{policies.LabelProxyInjected: "true"},
			Annotations: map[string]string{policies.AnnotationStatus: `{"connectors":["team-a/harbor"]}`}},
		Spec:   corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "127.0.0.1:5050/" + policies.ProxyPath(ref) + "/team/app:v1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	api := &countingReader{pods: []corev1.Pod{pending}}
	resolver := &access.Resolver{Source: &access.CachedSource{Cache: fake.NewClientBuilder().Build()}}
	n := &NodePulls{Pods: emptyIndex(), Live: NewLiveReads(api, LiveReadsLimit{QPS: 1, Burst: 1}), Access: resolver}
	id := identity.Identity{Namespace: "connectors-node", ServiceAccount: "connectors-node", NodeName: "node-1"}
	namespace, err := n.Authorize(context.Background(), id, nil, http.MethodGet, Route{Connector: ref, Repository: "team/app", Kind: KindManifest})
	require.NoError(t, err)
	assert.Equal(t, "team-a", namespace)
	assert.ElementsMatch(t, []string{"spec.nodeName=node-1", "status.phase=Pending"}, strings.Split(api.fields, ","))
	assert.Equal(t, "0", api.listRV, "from the watch cache")
}
