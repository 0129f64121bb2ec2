package manifests_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
)

// config/node grants kubelets (group system:nodes) the right NodeRestriction checks when a pod
// does not reference the proxy's audience (README "Per-pod pulls"): request tokens for audience
// connectors-proxy, in any namespace, and no other audience. config/default does not carry it.
func TestNodeCredentialProviderRBAC(t *testing.T) {
	for _, obj := range render(t, filepath.Join(root, "config", "default")) {
		assert.NotEqual(t, "connectors-node-token-audience", obj.GetName(), "config/default must not grant kubelets the audience (%s)", obj.GetKind())
	}
	out, err := kubectl(t, "apply", "--server-side", "--field-manager="+fieldManager, "-k", filepath.Join(root, "config", "node"))
	require.NoError(t, err, out)
	t.Cleanup(func() { // the other tests see the install alone
		out, err := kubectl(t, "delete", "-k", filepath.Join(root, "config", "node"))
		assert.NoError(t, err, out)
	})

	allowed := func(groups []string, audience string) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "system:node:worker-1", Groups: groups,
			// What noderestriction's validateNodeServiceAccountAudience asks: the verb on a
			// core-group resource named after the audience, named after the ServiceAccount.
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: "team-a", Verb: "request-serviceaccounts-token-audience", Resource: audience, Name: "builder",
			},
		}}
		require.NoError(t, k8s.Create(context.Background(), sar))
		return sar.Status.Allowed
	}
	node := []string{"system:nodes", "system:authenticated"}
	assert.True(t, allowed(node, "connectors-proxy"), "a kubelet may request the proxy's audience")
	assert.False(t, allowed(node, "another-audience"), "only the proxy's audience")
	assert.False(t, allowed([]string{"system:authenticated"}, "connectors-proxy"), "only kubelets")
}
