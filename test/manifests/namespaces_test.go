package manifests_test

import (
	"path/filepath"
	"sort"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// nodeNSObjects is everything the install puts in connectors-node: the node agents and their
// ServiceAccounts, and the quota that admits their priority class. No Secret, Role or RoleBinding:
// the agents need no namespaced rights, and their CA certificates arrive as ConfigMaps that
// trust-manager writes (config/trust).
var nodeNSObjects = []string{
	"DaemonSet/connectors-csi",
	"DaemonSet/connectors-node",
	"ResourceQuota/connectors-critical-pods",
	"ServiceAccount/connectors-csi",
	"ServiceAccount/connectors-node",
}

// credentialsNSObjects is everything the install puts in connectors-credentials: the Roles (and
// their bindings) that let the manager write and the proxy read Secrets there, and the quota
// that admits no pod. The manager's copies are all the Secrets that namespace ever holds.
var credentialsNSObjects = []string{
	"ResourceQuota/connectors-no-pods",
	"Role/connectors-manager",
	"Role/connectors-proxy",
	"RoleBinding/connectors-manager",
	"RoleBinding/connectors-proxy",
}

// The install splits into three namespaces: connectors-system at PodSecurity "restricted" for the
// manager and the proxy and everything namespaced of theirs, connectors-node at "privileged" for
// the node agents only, connectors-credentials at "restricted" with no pod at all for the
// manager's copies of the credentials; each namespace's priority ResourceQuota admits only the
// priority class its own pods use; and the node agents' CA certificates come from trust-manager
// Bundles that copy the ca.crt of the install's certificate Secrets into connectors-node and
// nowhere else.
func TestInstallNamespaces(t *testing.T) {
	objs := render(t, filepath.Join(root, "config", "default"))
	namespaces := map[string]*corev1.Namespace{}
	var inNodeNS, inCredentialsNS []string
	for _, obj := range objs {
		switch {
		case obj.GetKind() == "Namespace":
			var ns corev1.Namespace
			fromUnstructured(t, obj, &ns)
			namespaces[ns.Name] = &ns
		case obj.GetNamespace() == nodeNS:
			inNodeNS = append(inNodeNS, obj.GetKind()+"/"+obj.GetName())
		case obj.GetNamespace() == credentialsNS:
			inCredentialsNS = append(inCredentialsNS, obj.GetKind()+"/"+obj.GetName())
		case obj.GetNamespace() != "":
			assert.Equal(t, productNS, obj.GetNamespace(), "%s %s", obj.GetKind(), obj.GetName())
		}
	}
	sort.Strings(inNodeNS)
	assert.Equal(t, nodeNSObjects, inNodeNS, "what the install puts in %s", nodeNS)
	sort.Strings(inCredentialsNS)
	assert.Equal(t, credentialsNSObjects, inCredentialsNS, "what the install puts in %s", credentialsNS)

	t.Run("the copies' namespace admits no pod", func(t *testing.T) {
		obj := findRendered(objs, "ResourceQuota", credentialsNS, "connectors-no-pods")
		require.NotNil(t, obj)
		var q corev1.ResourceQuota
		fromUnstructured(t, obj, &q)
		assert.Nil(t, q.Spec.ScopeSelector, "every pod, whatever its priority class")
		assert.Empty(t, q.Spec.Scopes)
		require.Len(t, q.Spec.Hard, 1)
		assert.True(t, q.Spec.Hard.Pods().IsZero(), "pods: %v", q.Spec.Hard.Pods())
	})

	require.Len(t, namespaces, 3)
	for name, level := range map[string]string{productNS: "restricted", nodeNS: "privileged", credentialsNS: "restricted"} {
		ns := namespaces[name]
		require.NotNil(t, ns, "the install creates namespace %s", name)
		for _, mode := range []string{"enforce", "audit", "warn"} {
			assert.Equal(t, level, ns.Labels["pod-security.kubernetes.io/"+mode], "%s: PodSecurity %s", name, mode)
		}
	}

	t.Run("each quota admits the priority class of its namespace's pods only", func(t *testing.T) {
		classes := map[string][]string{}
		for _, w := range renderedWorkloads(t) {
			if c := w.template.Spec.PriorityClassName; c != "" && !contains(classes[w.namespace], c) {
				classes[w.namespace] = append(classes[w.namespace], c)
			}
		}
		quotas := map[string][]string{}
		for _, obj := range objs {
			if obj.GetKind() != "ResourceQuota" {
				continue
			}
			var q corev1.ResourceQuota
			fromUnstructured(t, obj, &q)
			if q.Namespace == credentialsNS {
				continue // no pod at all (above)
			}
			require.NotNil(t, q.Spec.ScopeSelector, q.Name)
			for _, e := range q.Spec.ScopeSelector.MatchExpressions {
				require.Equal(t, corev1.ResourceQuotaScopePriorityClass, e.ScopeName)
				require.Equal(t, corev1.ScopeSelectorOpIn, e.Operator)
				quotas[q.Namespace] = append(quotas[q.Namespace], e.Values...)
			}
		}
		assert.Equal(t, map[string][]string{productNS: {"system-cluster-critical"}, nodeNS: {"system-node-critical"}}, classes)
		assert.Equal(t, classes, quotas)
	})

	t.Run("Bundles copy certificate Secrets' ca.crt into connectors-node only", func(t *testing.T) {
		certSecrets := map[string]bool{}
		for _, obj := range objs {
			if obj.GetKind() == "Certificate" {
				var crt cmapi.Certificate
				fromUnstructured(t, obj, &crt)
				certSecrets[crt.Spec.SecretName] = crt.Namespace == productNS
			}
		}
		mounted := map[string]bool{}
		for _, w := range renderedWorkloads(t) {
			for _, v := range w.template.Spec.Volumes {
				if v.ConfigMap != nil {
					assert.Equal(t, nodeNS, w.namespace, "%s mounts ConfigMap %s", w.name, v.ConfigMap.Name)
					mounted[v.ConfigMap.Name] = true
				}
			}
		}
		bundles := 0
		for _, obj := range objs {
			if obj.GetKind() != "Bundle" {
				continue
			}
			bundles++
			assert.True(t, mounted[obj.GetName()], "Bundle %s makes a ConfigMap no node agent mounts", obj.GetName())
			for _, src := range bundleSources(t, objs, obj.GetName()) {
				assert.True(t, certSecrets[src.secret], "Bundle %s sources Secret %s, which no Certificate in %s fills", obj.GetName(), src.secret, productNS)
				assert.Equal(t, "ca.crt", src.key, "Bundle %s copies a CA certificate, never tls.crt or tls.key", obj.GetName())
			}
		}
		assert.Equal(t, len(mounted), bundles, "one Bundle per mounted ConfigMap")
	})
}

// secretKey is one Bundle source: a key of a Secret in trust-manager's trust namespace.
type secretKey struct{ secret, key string }

// bundleSources returns the Secret sources of the rendered Bundle whose target is the ConfigMap
// name, after checking that the Bundle writes ca.crt into connectors-node and into no other
// namespace, whatever other namespaces' labels (the API server sets the name label itself).
func bundleSources(t *testing.T, objs []*unstructured.Unstructured, name string) []secretKey {
	t.Helper()
	obj := findRendered(objs, "Bundle", "", name)
	require.NotNil(t, obj, "ConfigMap %s is the target of a cluster-scoped trust-manager Bundle of the same name (config/trust)", name)
	assert.Equal(t, "trust.cert-manager.io/v1alpha1", obj.GetAPIVersion(), "the Bundle API trust-manager v0.25 reconciles")
	key, _, _ := unstructured.NestedString(obj.Object, "spec", "target", "configMap", "key")
	assert.Equal(t, "ca.crt", key, "Bundle %s", name)
	_, hasSecretTarget, _ := unstructured.NestedMap(obj.Object, "spec", "target", "secret")
	assert.False(t, hasSecretTarget, "Bundle %s writes ConfigMaps only", name)

	rawSelector, _, _ := unstructured.NestedMap(obj.Object, "spec", "target", "namespaceSelector")
	var sel metav1.LabelSelector
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(rawSelector, &sel))
	selector, err := metav1.LabelSelectorAsSelector(&sel)
	require.NoError(t, err)
	asServerSets := func(ns string, own map[string]string) labels.Set {
		out := labels.Set{corev1.LabelMetadataName: ns}
		for k, v := range own {
			if k != corev1.LabelMetadataName {
				out[k] = v
			}
		}
		return out
	}
	nodeLabels := findRendered(objs, "Namespace", "", nodeNS).GetLabels()
	assert.True(t, selector.Matches(asServerSets(nodeNS, nodeLabels)), "Bundle %s targets %s", name, nodeNS)
	for _, other := range []string{productNS, credentialsNS, "team-a", "kube-system"} {
		assert.False(t, selector.Matches(asServerSets(other, nodeLabels)), "Bundle %s would also write into %s if it carried %s's labels", name, other, nodeNS)
	}

	sources, _, _ := unstructured.NestedSlice(obj.Object, "spec", "sources")
	require.NotEmpty(t, sources, "Bundle %s", name)
	var out []secretKey
	for _, s := range sources {
		secret, ok := s.(map[string]any)["secret"].(map[string]any)
		require.True(t, ok, "Bundle %s: every source is a Secret of the install (%v)", name, s)
		out = append(out, secretKey{secret: secret["name"].(string), key: secret["key"].(string)})
	}
	return out
}
