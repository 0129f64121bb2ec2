package manifests_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// config/default applies to the real API server with server-side apply, and the names it wires
// together resolve: the manager's ServiceAccount exists and is the subject of its bindings.
func TestInstallManifestsApply(t *testing.T) {
	out, err := kubectl(t, "apply", "--server-side", "--field-manager=harbor-connector-test", "-k", filepath.Join(root, "config", "default"))
	require.NoError(t, err, out)

	ctx := context.Background()
	var deploy appsv1.Deployment
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: "connectors-system", Name: "connectors-manager"}, &deploy))
	sa := deploy.Spec.Template.Spec.ServiceAccountName
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: "connectors-system", Name: sa}, &corev1.ServiceAccount{}))

	var crb rbacv1.ClusterRoleBinding
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Name: "connectors-manager"}, &crb))
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Name: crb.RoleRef.Name}, &rbacv1.ClusterRole{}))
	assert.Contains(t, crb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: "connectors-system"})
	var rb rbacv1.RoleBinding
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: "connectors-system", Name: "connectors-manager-leader-election"}, &rb))
	assert.Contains(t, rb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: "connectors-system"})
}
