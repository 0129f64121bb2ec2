package proxy_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
)

// Per-pod pulls (README "Per-pod pulls"): on a node labelled to pull per pod, the central
// proxy challenges a pull that carries no pod credential, and with one allows it only for the
// pod the token is bound to. The node listener relays what the kubelet's credential provider
// gave the runtime; crane plays the runtime (it, too, sends Basic credentials only after a 401).
func TestNodePullPerPod(t *testing.T) {
	ctx := context.Background()
	pushSample(t, "perpod")
	pushSample(t, "perpod-other")
	l := startNodeListener(t, proxyAddr)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{policies.LabelPullIdentity: policies.PullIdentityPod}}}
	require.NoError(t, k8s.Create(ctx, node))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), node) })
	require.NoError(t, waitProxySees(ctx, nodeMeta(), func(c client.Object) bool {
		return c.GetLabels()[policies.LabelPullIdentity] == policies.PullIdentityPod
	}))

	image := l.image(nsA, "harbor", "perpod")
	app := workloadPod(t, nsA, nodeName, nsA+"/harbor", image)
	other := workloadPod(t, nsA, nodeName, nsA+"/harbor", l.image(nsA, "harbor", "perpod-other"))
	pull := func(home string) (string, error) { return runClient(t, home, "crane", "manifest", image) }

	out, err := pull(t.TempDir())
	require.Error(t, err, "a node that pulls per pod refuses a pull without the pod's credential, even while a pod on it names the image")
	assert.Contains(t, out, "UNAUTHORIZED")

	out, err = pull(runtimeHome(t, l.addr, podToken(t, app)))
	require.NoError(t, err, "the pod that names the image pulls with its own token: %s", out)
	assert.Contains(t, out, "schemaVersion")

	out, err = pull(runtimeHome(t, l.addr, podToken(t, other)))
	require.Error(t, err, "another marked pod on the same node does not name this repository")
	assert.Contains(t, out, "DENIED")
	assert.Contains(t, out, "pod team-a/"+other.Name+" may not pull team/perpod through connector team-a/harbor on node node-1")

	// A token bound to a pod on another node, relayed by node-1's listener.
	elsewhere := workloadPod(t, nsA, "node-2", nsA+"/harbor", image)
	out, err = pull(runtimeHome(t, l.addr, podToken(t, elsewhere)))
	require.Error(t, err)
	assert.Contains(t, out, `is bound to node "node-2", but node node-1's listener relayed it`)

	// A token that is not bound to a pod at all.
	out, err = pull(runtimeHome(t, l.addr, saToken(t, nsA)))
	require.Error(t, err)
	assert.Contains(t, out, "is not a pod-bound token")

	// The same label removed: the node pulls per node again, without any credential.
	node.Labels = nil
	require.NoError(t, k8s.Update(ctx, node))
	require.NoError(t, waitProxySees(ctx, nodeMeta(), func(c client.Object) bool { return c.GetLabels()[policies.LabelPullIdentity] == "" }))
	out, err = pull(t.TempDir())
	require.NoError(t, err, "per node: a marked pod on the node names the image: %s", out)
}

// podToken is the token the kubelet requests for a pod's ServiceAccount (audience
// connectors-proxy, bound to the pod) and hands to connectors-credential-provider.
func podToken(t testing.TB, pod *corev1.Pod) string {
	t.Helper()
	expiry := int64(600)
	tr, err := clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(context.Background(), pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &expiry,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return tr.Status.Token
}

// runtimeHome is what the container runtime holds for one pull: the credential provider's
// answer for the pull host (any username, the pod's token as password).
func runtimeHome(t testing.TB, pullHost, token string) string {
	t.Helper()
	home := t.TempDir()
	cfg := map[string]any{"auths": map[string]any{pullHost: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("connectors-pod:" + token))}}}
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(home, "config.json"), b, 0o600))
	return home
}

// nodeMeta is node-1 as the proxy caches it: metadata only.
func nodeMeta() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
}
