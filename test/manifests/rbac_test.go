package manifests_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/kube"
)

// account is a ServiceAccount of the product.
type account struct{ namespace, name string }

// The product's ServiceAccounts, as config/default installs them: the manager's and the proxy's
// in connectors-system, the node agents' in connectors-node.
var productAccounts = []account{
	{productNS, "connectors-manager"},
	{productNS, "connectors-proxy"},
	{nodeNS, "connectors-csi"},
	{nodeNS, "connectors-node"},
}

func accountNamed(t *testing.T, name string) account {
	t.Helper()
	for _, a := range productAccounts {
		if a.name == name {
			return a
		}
	}
	t.Fatalf("no product ServiceAccount %s", name)
	return account{}
}

func asAccount(t *testing.T, name string) client.Client {
	t.Helper()
	a := accountNamed(t, name)
	c, err := client.New(kube.AsServiceAccount(env.Config, a.namespace, a.name), client.Options{Scheme: kube.Scheme()})
	require.NoError(t, err)
	return c
}

func assertForbidden(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	assert.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", fmt.Sprintf(format, args...), err)
}

// Real requests, made as the installed ServiceAccounts against the API server's RBAC: the proxy
// reads Secrets in connectors-system only (where the manager keeps its copies of the
// connectors' credentials), not in a namespace without Connectors, not in kube-system or the
// node agents' namespace, and it writes none; the manager reads Secrets anywhere (the
// Connectors' own) but creates, updates and deletes them only in connectors-system; the CSI
// driver and the node listener read none, their own namespace's included.
func TestInstallRBACConfinesSecrets(t *testing.T) {
	applyDefault(t)
	ctx := context.Background()
	plain := newNamespace(t) // a namespace without Connectors
	victims := map[string]*corev1.Secret{}
	for _, ns := range []string{plain, "kube-system", productNS, nodeNS} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "rbac-victim-"},
			Data: map[string][]byte{"password": []byte("do-not-read")}}
		require.NoError(t, k8s.Create(ctx, s))
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), s) })
		victims[ns] = s
	}

	t.Run("proxy", func(t *testing.T) {
		proxy := asAccount(t, "connectors-proxy")
		for _, ns := range []string{plain, "kube-system", nodeNS} {
			assertForbidden(t, proxy.Get(ctx, client.ObjectKeyFromObject(victims[ns]), &corev1.Secret{}), "proxy gets a Secret in %s", ns)
			assertForbidden(t, proxy.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)), "proxy lists Secrets in %s", ns)
		}
		assertForbidden(t, proxy.List(ctx, &corev1.SecretList{}), "proxy lists Secrets cluster-wide")
		var got corev1.Secret
		require.NoError(t, proxy.Get(ctx, client.ObjectKeyFromObject(victims[productNS]), &got), "the proxy reads the copies in %s", productNS)
		require.NoError(t, proxy.List(ctx, &corev1.SecretList{}, client.InNamespace(productNS)))
		assertForbidden(t, proxy.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: productNS, GenerateName: "by-proxy-"}}), "proxy creates a Secret")
		got.Data["password"] = []byte("changed")
		assertForbidden(t, proxy.Update(ctx, &got), "proxy updates a Secret")
		assertForbidden(t, proxy.Delete(ctx, &got), "proxy deletes a Secret")
	})

	t.Run("manager", func(t *testing.T) {
		manager := asAccount(t, "connectors-manager")
		for _, ns := range []string{plain, "kube-system", "default", nodeNS} {
			assertForbidden(t, manager.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "by-manager-"}}), "manager creates a Secret in %s", ns)
		}
		for _, ns := range []string{plain, "kube-system"} {
			var s corev1.Secret
			require.NoError(t, manager.Get(ctx, client.ObjectKeyFromObject(victims[ns]), &s), "the manager reads the Secrets Connectors name, anywhere")
			s.Data["password"] = []byte("changed")
			assertForbidden(t, manager.Update(ctx, &s), "manager updates a Secret in %s", ns)
			assertForbidden(t, manager.Delete(ctx, &s), "manager deletes a Secret in %s", ns)
		}
		copySecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: productNS, GenerateName: "connector-"},
			Data: map[string][]byte{"password": []byte("copy")}}
		require.NoError(t, manager.Create(ctx, copySecret), "the manager writes its copies in %s", productNS)
		copySecret.Data["password"] = []byte("rotated")
		require.NoError(t, manager.Update(ctx, copySecret))
		require.NoError(t, manager.Delete(ctx, copySecret))
	})

	for _, name := range []string{"connectors-csi", "connectors-node"} {
		t.Run(name, func(t *testing.T) {
			c := asAccount(t, name)
			for _, ns := range []string{plain, "kube-system", productNS, nodeNS} {
				assertForbidden(t, c.Get(ctx, client.ObjectKeyFromObject(victims[ns]), &corev1.Secret{}), "%s gets a Secret in %s", name, ns)
				assertForbidden(t, c.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)), "%s lists Secrets in %s", name, ns)
			}
		})
	}
}

// No product account can give itself or anyone more rights: creating RoleBindings (outside the
// product's namespaces and inside them), ClusterRoleBindings, Roles and ClusterRoles is refused, as
// is changing its own ClusterRole, and the API server's SubjectAccessReview says no to bind,
// escalate, impersonate, minting other accounts' tokens and creating workloads that could mount
// Secrets.
func TestInstallRBACNoSelfEscalation(t *testing.T) {
	applyDefault(t)
	ctx := context.Background()
	plain := newNamespace(t)
	for _, acct := range productAccounts {
		name := acct.name
		t.Run(name, func(t *testing.T) {
			c := asAccount(t, name)
			self := []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: acct.namespace}}
			admin := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}
			for _, ns := range []string{"kube-system", plain, productNS, nodeNS} {
				rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "escalate-"}, RoleRef: admin, Subjects: self}
				assertForbidden(t, c.Create(ctx, rb), "%s binds itself to cluster-admin in %s", name, ns)
				view := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "escalate-"},
					RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: self}
				assertForbidden(t, c.Create(ctx, view), "%s binds its own ClusterRole in %s", name, ns)
				role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "escalate-"},
					Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}}}
				assertForbidden(t, c.Create(ctx, role), "%s creates a Role in %s", name, ns)
			}
			assertForbidden(t, c.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{GenerateName: "escalate-"}, RoleRef: admin, Subjects: self}),
				"%s creates a ClusterRoleBinding", name)
			assertForbidden(t, c.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{GenerateName: "escalate-"}}), "%s creates a ClusterRole", name)
			var own rbacv1.ClusterRole
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &own); err == nil {
				own.Rules = append(own.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"*"}})
				assertForbidden(t, c.Update(ctx, &own), "%s widens its own ClusterRole", name)
			}

			user := kube.ServiceAccountUser(acct.namespace, name)
			groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + acct.namespace, "system:authenticated"}
			for _, attr := range escalationAttributes(plain) {
				sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: attr}}
				require.NoError(t, k8s.Create(ctx, sar))
				assert.False(t, sar.Status.Allowed, "%s may %s %s/%s %q in %q", name, attr.Verb, attr.Group, attr.Resource+subresource(attr), attr.Name, attr.Namespace)
			}
		})
	}
}

func subresource(a *authorizationv1.ResourceAttributes) string {
	if a.Subresource == "" {
		return ""
	}
	return "/" + a.Subresource
}

// escalationAttributes are requests that would let an account reach Secrets or rights it does
// not hold, in the product's namespaces, kube-system and a plain namespace, and cluster-wide.
func escalationAttributes(plain string) []*authorizationv1.ResourceAttributes {
	var out []*authorizationv1.ResourceAttributes
	for _, ns := range []string{productNS, nodeNS, "kube-system", plain, ""} {
		for _, res := range []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"} {
			for _, verb := range []string{"create", "update", "patch", "delete", "bind", "escalate"} {
				out = append(out, &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: rbacv1.GroupName, Resource: res})
			}
		}
		out = append(out,
			&authorizationv1.ResourceAttributes{Namespace: ns, Verb: "impersonate", Resource: "serviceaccounts"},
			&authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "serviceaccounts", Subresource: "token"},
			&authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "pods"},
			&authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "exec"},
			&authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Group: "apps", Resource: "deployments"},
			&authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Group: "apps", Resource: "daemonsets"},
		)
	}
	return append(out,
		&authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "users"},
		&authorizationv1.ResourceAttributes{Verb: "impersonate", Resource: "groups"},
		&authorizationv1.ResourceAttributes{Verb: "create", Group: "certificates.k8s.io", Resource: "certificatesigningrequests", Subresource: "approval"},
		&authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"},
		&authorizationv1.ResourceAttributes{Verb: "update", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"},
	)
}

// The rendered install, read as rules: what each product account is granted on Secrets and on
// RBAC objects, by every binding that names it (or a group it is in). This pins the RBAC README
// documents: a new rule on Secrets or on RBAC fails here, not in a review.
func TestInstallRBACRules(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	type grant struct {
		namespace string // "" for a ClusterRole's rules
		rule      rbacv1.PolicyRule
	}
	grants := map[string][]grant{}
	names := func(subjects []rbacv1.Subject) []string {
		var out []string
		for _, s := range subjects {
			for _, a := range productAccounts {
				switch {
				case s.Kind == "ServiceAccount" && s.Namespace == a.namespace && s.Name == a.name,
					s.Kind == "Group" && (s.Name == "system:serviceaccounts" || s.Name == "system:serviceaccounts:"+a.namespace):
					out = append(out, a.name)
				}
			}
		}
		return out
	}
	var crbs rbacv1.ClusterRoleBindingList
	require.NoError(t, c.List(ctx, &crbs))
	for _, b := range crbs.Items {
		var role rbacv1.ClusterRole
		if b.RoleRef.Kind != "ClusterRole" || c.Get(ctx, client.ObjectKey{Name: b.RoleRef.Name}, &role) != nil {
			continue
		}
		for _, sa := range names(b.Subjects) {
			for _, r := range role.Rules {
				grants[sa] = append(grants[sa], grant{rule: r})
			}
		}
	}
	var rbs rbacv1.RoleBindingList
	require.NoError(t, c.List(ctx, &rbs))
	for _, b := range rbs.Items {
		var rules []rbacv1.PolicyRule
		switch b.RoleRef.Kind {
		case "Role":
			var role rbacv1.Role
			require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: b.RoleRef.Name}, &role), "RoleBinding %s/%s", b.Namespace, b.Name)
			rules = role.Rules
		case "ClusterRole":
			var role rbacv1.ClusterRole
			require.NoError(t, c.Get(ctx, client.ObjectKey{Name: b.RoleRef.Name}, &role))
			rules = role.Rules
		}
		for _, sa := range names(b.Subjects) {
			for _, r := range rules {
				grants[sa] = append(grants[sa], grant{namespace: b.Namespace, rule: r})
			}
		}
	}

	for sa, gs := range grants {
		for _, g := range gs {
			assert.NotEqual(t, nodeNS, g.namespace, "%s holds a Role in %s (%v): the node agents need no namespaced rights", sa, nodeNS, g.rule)
		}
	}
	secretVerbs := map[string]map[string][]string{} // account -> namespace ("" cluster-wide) -> verbs
	for _, acct := range productAccounts {
		sa := acct.name
		secretVerbs[sa] = map[string][]string{}
		for _, g := range grants[sa] {
			r := g.rule
			for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
				assert.NotContains(t, field, "*", "%s holds a wildcard rule %v", sa, r)
			}
			for _, v := range r.Verbs {
				assert.NotContains(t, []string{"bind", "escalate", "impersonate"}, v, "%s holds %s (%v)", sa, v, r)
			}
			if contains(r.APIGroups, rbacv1.GroupName) {
				for _, v := range r.Verbs {
					assert.Contains(t, []string{"get", "list", "watch"}, v, "%s may %s RBAC objects (%v)", sa, v, r)
				}
			}
			if contains(r.APIGroups, "") && contains(r.Resources, "secrets") {
				secretVerbs[sa][g.namespace] = append(secretVerbs[sa][g.namespace], r.Verbs...)
			}
		}
	}
	assert.Equal(t, map[string]map[string][]string{
		"connectors-manager": {"": {"get", "list", "watch"}, productNS: {"create", "delete", "update"}},
		"connectors-proxy":   {productNS: {"get", "list", "watch"}},
		"connectors-csi":     {},
		"connectors-node":    {},
	}, secretVerbs, "Secret access per account and namespace (\"\": cluster-wide)")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
