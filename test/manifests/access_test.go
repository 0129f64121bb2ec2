package manifests_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/kube"
)

// The aggregation labels and rules of the install's user-facing ClusterRoles: admin and edit
// manage Connectors, view (and through it edit and admin) reads them, and no aggregated rule
// lets a user write the status subresource or touch anything but Connectors.
func TestInstallAggregatedRolesForUsers(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	const (
		toAdmin = "rbac.authorization.k8s.io/aggregate-to-admin"
		toEdit  = "rbac.authorization.k8s.io/aggregate-to-edit"
		toView  = "rbac.authorization.k8s.io/aggregate-to-view"
	)
	var edit, view rbacv1.ClusterRole
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-edit"}, &edit))
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-view"}, &view))
	assert.Equal(t, map[string]string{toAdmin: "true", toEdit: "true"}, edit.Labels, "connectors-edit goes into admin and edit only")
	assert.Equal(t, map[string]string{toAdmin: "true", toEdit: "true", toView: "true"}, view.Labels)
	assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{"connectors.alauda.io"}, Resources: []string{"connectors"},
		Verbs: []string{"create", "update", "patch", "delete", "deletecollection"}}}, edit.Rules)
	assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{"connectors.alauda.io"}, Resources: []string{"connectors", "connectors/status"},
		Verbs: []string{"get", "list", "watch"}}}, view.Rules)

	// Every ClusterRole of the install that feeds a built-in role.
	fed := 0
	for _, obj := range render(t, filepath.Join(root, "config", "default")) {
		if obj.GetKind() != "ClusterRole" {
			continue
		}
		l := obj.GetLabels()
		if l[toAdmin] != "true" && l[toEdit] != "true" && l[toView] != "true" {
			continue
		}
		var r rbacv1.ClusterRole
		fromUnstructured(t, obj, &r)
		fed++
		for _, rule := range r.Rules {
			assert.Equal(t, []string{"connectors.alauda.io"}, rule.APIGroups, "%s: %v", r.Name, rule)
			if contains(rule.Resources, "connectors/status") {
				assert.Equal(t, []string{"get", "list", "watch"}, rule.Verbs, "%s: the status is the manager's to write", r.Name)
			}
		}
	}
	assert.Equal(t, 2, fed)
}

// Real requests as users bound to the built-in edit, admin and view ClusterRoles in one
// namespace (kube.CheckConnectorAccess, which the cluster test bed can run as it is). envtest
// runs no kube-controller-manager, so nothing copies aggregated rules into those roles here:
// kube.AggregateClusterRoles does it first with the controller's selection rule. What is real
// is the API server's RBAC authorizer deciding every request; what is emulated is only the copy.
func TestInstallBuiltInRolesManageConnectors(t *testing.T) {
	applyDefault(t)
	ctx := context.Background()
	require.NoError(t, kube.AggregateClusterRoles(ctx, k8s))
	var edit rbacv1.ClusterRole
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Name: "edit"}, &edit))
	require.NotNil(t, edit.AggregationRule, "the built-in edit role aggregates")
	assert.NotEmpty(t, edit.Rules, "the emulated aggregation filled edit")
	require.NoError(t, kube.CheckConnectorAccess(ctx, env.Config))
}
