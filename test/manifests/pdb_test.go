package manifests_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Every PodDisruptionBudget lets a node drain evict a replica that is not Ready
// (unhealthyPodEvictionPolicy: AlwaysAllow), so a crash-looping replica never blocks a drain; the
// API server keeps the field.
func TestInstallPDBsAllowUnhealthyEviction(t *testing.T) {
	c := applyDefault(t)
	rendered := 0
	for _, obj := range render(t, filepath.Join(root, "config", "default")) {
		if obj.GetKind() != "PodDisruptionBudget" {
			continue
		}
		rendered++
		var pdb policyv1.PodDisruptionBudget
		require.NoError(t, c.Get(context.Background(), client.ObjectKey{Namespace: obj.GetNamespace(), Name: obj.GetName()}, &pdb))
		assert.Equal(t, policyv1.AlwaysAllow, ptr.Deref(pdb.Spec.UnhealthyPodEvictionPolicy, ""), "PodDisruptionBudget %s", pdb.Name)
	}
	assert.Equal(t, 2, rendered, "the manager's and the proxy's")
}
