package manifests_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
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
	return asAccountWithWatch(t, name)
}

func asAccountWithWatch(t *testing.T, name string) client.WithWatch {
	t.Helper()
	a := accountNamed(t, name)
	c, err := client.NewWithWatch(kube.AsServiceAccount(env.Config, a.namespace, a.name), client.Options{Scheme: kube.Scheme()})
	require.NoError(t, err)
	return c
}

func assertForbidden(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	assert.True(t, apierrors.IsForbidden(err), "%s: want Forbidden, got %v", fmt.Sprintf(format, args...), err)
}

// Real requests, made as the installed ServiceAccounts against the API server's RBAC: the proxy
// reads Secrets in connectors-credentials only (the manager's copies of the connectors'
// credentials, which is all that namespace holds), not in connectors-system (the product's keys:
// the root CA's, the webhook's and the proxy's serving keys, the interception CA's), not in a
// namespace without Connectors, not in kube-system or the node agents' namespace, and it writes
// none; the manager reads Secrets anywhere (the Connectors' own) but creates, updates and deletes
// them only in connectors-credentials, never in connectors-system; the CSI driver and the node
// listener read none, their own namespace's included.
func TestInstallRBACConfinesSecrets(t *testing.T) {
	applyDefault(t)
	ctx := context.Background()
	plain := newNamespace(t) // a namespace without Connectors
	victims := map[string]*corev1.Secret{}
	for _, ns := range []string{plain, "kube-system", productNS, nodeNS, credentialsNS} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "rbac-victim-"},
			Data: map[string][]byte{"password": []byte("do-not-read")}}
		require.NoError(t, k8s.Create(ctx, s))
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), s) })
		victims[ns] = s
	}
	// The product's keys, as cert-manager writes them into connectors-system for the install's
	// Certificates (no cert-manager runs here, so the test writes them: a refusal must not be a
	// NotFound in disguise).
	keys := productKeySecrets(t)
	require.Contains(t, keys, "connectors-root-ca", "the root CA's key is one of the product's keys in %s", productNS)
	for _, name := range keys {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: productNS, Name: name}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": []byte("cert"), "tls.key": []byte("do-not-read"), "ca.crt": []byte("ca")}}
		err := k8s.Create(ctx, s)
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		require.NoError(t, err)
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), s) })
	}

	t.Run("proxy", func(t *testing.T) {
		proxy := asAccountWithWatch(t, "connectors-proxy")
		for _, ns := range []string{productNS, plain, "kube-system", nodeNS} {
			assertForbidden(t, proxy.Get(ctx, client.ObjectKeyFromObject(victims[ns]), &corev1.Secret{}), "proxy gets a Secret in %s", ns)
			assertForbidden(t, proxy.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)), "proxy lists Secrets in %s", ns)
			_, err := proxy.Watch(ctx, &corev1.SecretList{}, client.InNamespace(ns))
			assertForbidden(t, err, "proxy watches Secrets in %s", ns)
		}
		for _, name := range keys {
			assertForbidden(t, proxy.Get(ctx, client.ObjectKey{Namespace: productNS, Name: name}, &corev1.Secret{}), "proxy gets the product's key %s/%s", productNS, name)
		}
		assertForbidden(t, proxy.List(ctx, &corev1.SecretList{}), "proxy lists Secrets cluster-wide")
		var got corev1.Secret
		require.NoError(t, proxy.Get(ctx, client.ObjectKeyFromObject(victims[credentialsNS]), &got), "the proxy reads the copies in %s", credentialsNS)
		require.NoError(t, proxy.List(ctx, &corev1.SecretList{}, client.InNamespace(credentialsNS)))
		watch, err := proxy.Watch(ctx, &corev1.SecretList{}, client.InNamespace(credentialsNS))
		require.NoError(t, err, "the proxy watches the copies in %s", credentialsNS)
		watch.Stop()
		for _, ns := range []string{credentialsNS, productNS} {
			assertForbidden(t, proxy.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "by-proxy-"}}), "proxy creates a Secret in %s", ns)
		}
		got.Data["password"] = []byte("changed")
		assertForbidden(t, proxy.Update(ctx, &got), "proxy updates a Secret")
		assertForbidden(t, proxy.Delete(ctx, &got), "proxy deletes a Secret")
	})

	t.Run("manager", func(t *testing.T) {
		manager := asAccount(t, "connectors-manager")
		for _, ns := range []string{plain, "kube-system", "default", nodeNS, productNS} {
			assertForbidden(t, manager.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "by-manager-"}}), "manager creates a Secret in %s", ns)
		}
		for _, key := range []client.ObjectKey{
			client.ObjectKeyFromObject(victims[plain]), client.ObjectKeyFromObject(victims["kube-system"]),
			client.ObjectKeyFromObject(victims[productNS]), {Namespace: productNS, Name: "connectors-root-ca"},
		} {
			var s corev1.Secret
			require.NoError(t, manager.Get(ctx, key, &s), "the manager reads the Secrets Connectors name, anywhere")
			s.Data["password"] = []byte("changed")
			assertForbidden(t, manager.Update(ctx, &s), "manager updates Secret %s", key)
			assertForbidden(t, manager.Delete(ctx, &s), "manager deletes Secret %s", key)
		}
		copySecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: credentialsNS, GenerateName: "connector-"},
			Data: map[string][]byte{"password": []byte("copy")}}
		require.NoError(t, manager.Create(ctx, copySecret), "the manager writes its copies in %s", credentialsNS)
		copySecret.Data["password"] = []byte("rotated")
		require.NoError(t, manager.Update(ctx, copySecret))
		require.NoError(t, manager.Delete(ctx, copySecret))
	})

	for _, name := range []string{"connectors-csi", "connectors-node"} {
		t.Run(name, func(t *testing.T) {
			c := asAccount(t, name)
			for _, ns := range []string{plain, "kube-system", productNS, nodeNS, credentialsNS} {
				assertForbidden(t, c.Get(ctx, client.ObjectKeyFromObject(victims[ns]), &corev1.Secret{}), "%s gets a Secret in %s", name, ns)
				assertForbidden(t, c.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)), "%s lists Secrets in %s", name, ns)
			}
		})
	}
}

// productKeySecrets are the Secrets the install's Certificates in connectors-system fill (the
// root CA's, the webhook's, the proxy's, the interception CA's): every key of the product.
func productKeySecrets(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, obj := range render(t, filepath.Join(root, "config", "default")) {
		if obj.GetKind() != "Certificate" {
			continue
		}
		assert.Equal(t, productNS, obj.GetNamespace(), "Certificate %s", obj.GetName())
		name, _, _ := unstructured.NestedString(obj.Object, "spec", "secretName")
		require.NotEmpty(t, name, "Certificate %s", obj.GetName())
		out = append(out, name)
	}
	return out
}

// The copies' namespace holds the manager's copies and runs nothing: no pod is admitted there,
// one that meets Pod Security "restricted" (the proxy's own) is refused by the ResourceQuota of
// zero pods and one that does not is refused too, so no workload, user's or product's, can
// mount a copy.
func TestInstallCredentialsNamespaceRunsNothing(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	var ns corev1.Namespace
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: credentialsNS}, &ns))
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
	// The quota as kube-controller-manager's quota controller would record it (envtest runs
	// none; unrecorded, the API server refuses every pod with "status unknown for quota").
	observeQuotas(t, c, credentialsNS)

	var proxy *workload
	for _, w := range renderedWorkloads(t) {
		if w.name == "connectors-proxy" {
			proxy = &w
		}
	}
	require.NotNil(t, proxy)
	require.NoError(t, k8s.Create(ctx, proxy.pod(productNS), client.DryRunAll), "the proxy's pod is admitted where it runs")
	err := k8s.Create(ctx, proxy.pod(credentialsNS), client.DryRunAll)
	require.Error(t, err, "a pod that meets restricted, in %s", credentialsNS)
	assert.True(t, apierrors.IsForbidden(err), "%v", err)
	assert.Contains(t, err.Error(), "exceeded quota: connectors-no-pods")

	privileged := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: credentialsNS, GenerateName: "steal-"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}},
		Volumes:    []corev1.Volume{{Name: "copy", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "connector-0123456789abcdef0123"}}}},
	}}
	err = k8s.Create(ctx, privileged, client.DryRunAll)
	require.Error(t, err, "a privileged pod mounting a copy, in %s", credentialsNS)
	assert.True(t, apierrors.IsForbidden(err), "%v", err)

	// No workload of the install runs there (TestInstallRBACRules: only Secret rules are granted there).
	for _, w := range renderedWorkloads(t) {
		assert.NotEqual(t, credentialsNS, w.namespace, "%s %s runs in %s", w.kind, w.name, credentialsNS)
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
			for _, ns := range []string{"kube-system", plain, productNS, nodeNS, credentialsNS} {
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
	for _, ns := range []string{productNS, nodeNS, credentialsNS, "kube-system", plain, ""} {
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
	for sa, gs := range grants {
		for _, g := range gs {
			if g.namespace == credentialsNS {
				assert.Equal(t, []string{""}, g.rule.APIGroups, "%s holds %v in %s: the copies' namespace grants Secrets only", sa, g.rule, credentialsNS)
				assert.Equal(t, []string{"secrets"}, g.rule.Resources, "%s holds %v in %s: the copies' namespace grants Secrets only", sa, g.rule, credentialsNS)
			}
		}
	}
	assert.Equal(t, map[string]map[string][]string{
		"connectors-manager": {"": {"get", "list", "watch"}, credentialsNS: {"create", "delete", "update"}},
		"connectors-proxy":   {credentialsNS: {"get", "list", "watch"}},
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
