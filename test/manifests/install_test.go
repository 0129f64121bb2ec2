package manifests_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/test/images"
	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/webhook"
)

const (
	// productNS holds the manager and the proxy (PodSecurity "restricted") and the product's keys.
	productNS = "connectors-system"
	// nodeNS holds the node agents (PodSecurity "privileged") and the CA ConfigMaps they mount.
	nodeNS = "connectors-node"
	// credentialsNS holds the manager's copies of the connectors' credentials and nothing else
	// (PodSecurity "restricted", no pod at all): the one namespace whose Secrets the proxy reads
	// and the manager writes.
	credentialsNS = access.DefaultCredentialsNamespace
)

// config/default applies to the real API server with server-side apply, and every name it
// wires together resolves, so the manifests cannot drift from each other or from the code.
func TestInstallManifestsApply(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()

	var deploy appsv1.Deployment
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-manager"}, &deploy))
	podSpec := deploy.Spec.Template.Spec
	manager := podSpec.Containers[0]

	t.Run("RBAC subjects are the manager's ServiceAccount", func(t *testing.T) {
		sa := podSpec.ServiceAccountName
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: sa}, &corev1.ServiceAccount{}))
		var crb rbacv1.ClusterRoleBinding
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-manager"}, &crb))
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: crb.RoleRef.Name}, &rbacv1.ClusterRole{}))
		assert.Contains(t, crb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: productNS})
		var rb rbacv1.RoleBinding
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-manager-leader-election"}, &rb))
		assert.Contains(t, rb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: productNS})
	})

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-proxy-inject"}, &mwc))
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-pod-status"}, &vwc))

	t.Run("webhook clientConfig reaches the manager", func(t *testing.T) {
		require.Len(t, mwc.Webhooks, 4)
		require.Len(t, vwc.Webhooks, 1)
		paths := map[string][]string{} // the paths each configuration may point at
		clientConfigs := map[string]admissionregistrationv1.WebhookClientConfig{}
		for _, wh := range mwc.Webhooks {
			clientConfigs[wh.Name] = wh.ClientConfig
			paths[wh.Name] = []string{webhook.PodsPath, webhook.JobsPath}
		}
		for _, wh := range vwc.Webhooks {
			clientConfigs[wh.Name] = wh.ClientConfig
			paths[wh.Name] = []string{webhook.ValidatePodsPath}
		}
		for name, cc := range clientConfigs {
			svcRef := cc.Service
			require.NotNil(t, svcRef, name)
			assert.Contains(t, paths[name], *svcRef.Path, "%s path must be one the manager serves", name)
			var svc corev1.Service
			require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: svcRef.Namespace, Name: svcRef.Name}, &svc), name)
			assert.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deploy.Spec.Template.Labels)), "Service %s selects the manager pods", svc.Name)
			port := findServicePort(svc, *svcRef.Port)
			require.NotNil(t, port, "Service %s has port %d", svc.Name, *svcRef.Port)
			assert.True(t, containerHasPort(manager, port.TargetPort.String()), "manager container exposes %s", port.TargetPort.String())
		}
	})

	t.Run("cert-manager serves and injects the webhook certificate", func(t *testing.T) {
		ref := mwc.Annotations["cert-manager.io/inject-ca-from"]
		assert.Equal(t, ref, vwc.Annotations["cert-manager.io/inject-ca-from"], "both webhook configurations get the CA of the one serving certificate")
		ns, name, ok := strings.Cut(ref, "/")
		require.True(t, ok, "inject-ca-from %q", ref)
		var cert cmapi.Certificate
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cert))
		svc := mwc.Webhooks[0].ClientConfig.Service
		assert.Contains(t, cert.Spec.DNSNames, svc.Name+"."+svc.Namespace+".svc")
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: cert.Spec.IssuerRef.Name}, &cmapi.Issuer{}))
		mounted := false
		for _, v := range podSpec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == cert.Spec.SecretName {
				for _, m := range manager.VolumeMounts {
					if m.Name == v.Name && containsArg(manager.Args, "--webhook-cert-dir="+m.MountPath) {
						mounted = true
					}
				}
			}
		}
		assert.True(t, mounted, "the manager mounts Secret %s at its --webhook-cert-dir", cert.Spec.SecretName)
	})

	t.Run("admission policies are bound and agree with the manager", func(t *testing.T) {
		var bindings admissionregistrationv1.ValidatingAdmissionPolicyBindingList
		require.NoError(t, c.List(ctx, &bindings))
		require.NotEmpty(t, bindings.Items)
		for _, b := range bindings.Items {
			require.NoError(t, c.Get(ctx, client.ObjectKey{Name: b.Spec.PolicyName}, &admissionregistrationv1.ValidatingAdmissionPolicy{}), b.Name)
		}
		var vap admissionregistrationv1.ValidatingAdmissionPolicy
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-pull-host-requires-injection"}, &vap))
		pullHost := argValue(manager.Args, "--pull-host")
		require.NotEmpty(t, pullHost)
		rule, err := policies.NewPullHostRule(pullHost)
		require.NoError(t, err)
		variables := map[string]string{}
		for _, v := range vap.Spec.Variables {
			variables[v.Name] = v.Expression
		}
		// The policy matches the pull host in every spelling (policies.PullHostRule) and the proxy
		// path under any host, with the Go rule's patterns verbatim.
		assert.Contains(t, variables["aimed"], "i.matches(r'"+rule.ImagePattern()+"')",
			"the policy's pull host pattern must be the Go rule's for the manager's --pull-host %s; put this in config/webhook/pull-host-policy.yaml and validating.yaml:\n  r'%s'", pullHost, rule.ImagePattern())
		assert.Contains(t, variables["aimed"], "i.matches(r'"+policies.ProxyPathImagePattern+"')")
		allScopes := admissionregistrationv1.AllScopes
		assert.Contains(t, vap.Spec.MatchConstraints.ResourceRules, admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/ephemeralcontainers"}, Scope: &allScopes},
		}}, "kubectl debug's subresource is covered")
	})

	t.Run("the validating webhook sees marked Pods in every namespace but kube-system", func(t *testing.T) {
		pullHost := argValue(manager.Args, "--pull-host")
		rule, err := policies.NewPullHostRule(pullHost)
		require.NoError(t, err)
		require.Len(t, vwc.Webhooks, 1)
		wh := vwc.Webhooks[0]
		assert.Equal(t, admissionregistrationv1.Fail, *wh.FailurePolicy)
		assert.Equal(t, admissionregistrationv1.SideEffectClassNone, *wh.SideEffects)
		assert.Nil(t, wh.ObjectSelector.MatchExpressions, "no object selector: a forged Pod chooses its own labels")
		assert.Empty(t, wh.ObjectSelector.MatchLabels)
		assert.Equal(t, []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system"}}},
			wh.NamespaceSelector.MatchExpressions, "every namespace but kube-system, whatever its labels")
		assert.Empty(t, wh.NamespaceSelector.MatchLabels)

		ops := map[string][]admissionregistrationv1.OperationType{}
		for _, r := range wh.Rules {
			assert.Equal(t, []string{""}, r.APIGroups)
			for _, res := range r.Resources {
				ops[res] = append(ops[res], r.Operations...)
			}
		}
		assert.ElementsMatch(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}, ops["pods"])
		assert.Equal(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Update}, ops["pods/ephemeralcontainers"])
		assert.Equal(t, []admissionregistrationv1.OperationType{admissionregistrationv1.Update}, ops["pods/status"])

		conditions := map[string]string{}
		for _, mc := range wh.MatchConditions {
			conditions[mc.Name] = mc.Expression
		}
		marked := conditions["marked-or-aimed-at-the-pull-host"]
		assert.Contains(t, marked, "'"+policies.AnnotationStatus+"' in object.metadata.annotations")
		assert.Contains(t, marked, "ephemeralContainers")
		assert.Contains(t, marked, "initContainers")
		assert.Contains(t, marked, "i.matches(r'"+policies.ProxyPathImagePattern+"')", "the same proxy path pattern as the policy")
		assert.Contains(t, marked, "i.matches(r'"+rule.ImagePattern()+"')", "the same pull host pattern as the policy")
		status := conditions["status-updates-that-change-the-status-annotation"]
		assert.Contains(t, status, "request.subResource != 'status'")
		assert.Contains(t, status, "oldObject.metadata.annotations['"+policies.AnnotationStatus+"']")
		assert.Len(t, conditions, 2)
	})
}

// The proxy: its Service reaches its pods' https port, its Certificate names the Service and is
// mounted where the proxy reads it, its ServiceAccount holds its role, and the manager's
// --proxy-address is that Service.
func TestInstallProxyNamesResolve(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()

	var proxy appsv1.Deployment
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &proxy))
	// The replica count belongs to the HorizontalPodAutoscaler (TestInstallProxyAutoscaling).
	container := proxy.Spec.Template.Spec.Containers[0]
	var svc corev1.Service
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &svc))
	assert.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(proxy.Spec.Template.Labels)))
	port := findServicePort(svc, 443)
	require.NotNil(t, port)
	assert.True(t, containerHasPort(container, port.TargetPort.String()))
	// Layers stay in the zone: the Service prefers a same-zone replica and the replicas spread
	// over zones.
	assert.Equal(t, corev1.ServiceTrafficDistributionPreferSameZone, ptr.Deref(svc.Spec.TrafficDistribution, ""))
	spread := proxy.Spec.Template.Spec.TopologySpreadConstraints
	require.Len(t, spread, 1)
	assert.Equal(t, "topology.kubernetes.io/zone", spread[0].TopologyKey)
	assert.Equal(t, corev1.ScheduleAnyway, spread[0].WhenUnsatisfiable, "spreading never blocks scheduling")
	assert.True(t, labels.SelectorFromSet(spread[0].LabelSelector.MatchLabels).Matches(labels.Set(proxy.Spec.Template.Labels)))

	var cert cmapi.Certificate
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &cert))
	assert.Contains(t, cert.Spec.DNSNames, "connectors-proxy.connectors-system.svc")
	mounted := false
	for _, v := range proxy.Spec.Template.Spec.Volumes {
		for _, m := range container.VolumeMounts {
			if v.Secret != nil && v.Secret.SecretName == cert.Spec.SecretName && m.Name == v.Name && containsArg(container.Args, "--tls-cert-dir="+m.MountPath) {
				mounted = true
			}
		}
	}
	assert.True(t, mounted, "the proxy reads its certificate from the Certificate's Secret")

	var crb rbacv1.ClusterRoleBinding
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-proxy"}, &crb))
	assert.Contains(t, crb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: proxy.Spec.Template.Spec.ServiceAccountName, Namespace: productNS})
	var role rbacv1.ClusterRole
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: crb.RoleRef.Name}, &role))
	assert.True(t, grants(role, "authentication.k8s.io", "tokenreviews", "create"), "the proxy verifies tokens")
	assert.False(t, grants(role, "", "secrets", "update"), "the proxy never writes Secrets")

	var manager appsv1.Deployment
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-manager"}, &manager))
	assert.Equal(t, "https://connectors-proxy.connectors-system.svc", argValue(manager.Spec.Template.Spec.Containers[0].Args, "--proxy-address"))
}

// Both binaries' --credentials-namespace is the copies' namespace (access.DefaultCredentialsNamespace,
// also their default), and the Roles that let the manager write and the proxy read Secrets are
// in it and bound to their ServiceAccounts, so the RBAC markers, config/ and the flags agree.
func TestInstallCredentialsNamespaceWiring(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	for _, name := range []string{"connectors-manager", "connectors-proxy"} {
		var d appsv1.Deployment
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: name}, &d))
		assert.Equal(t, credentialsNS, argValue(d.Spec.Template.Spec.Containers[0].Args, "--credentials-namespace"), "%s --credentials-namespace", name)
		var rb rbacv1.RoleBinding
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: credentialsNS, Name: name}, &rb), "%s's RoleBinding in %s", name, credentialsNS)
		assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: d.Spec.Template.Spec.ServiceAccountName, Namespace: productNS}}, rb.Subjects)
		require.Equal(t, "Role", rb.RoleRef.Kind)
		var role rbacv1.Role
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: credentialsNS, Name: rb.RoleRef.Name}, &role))
		for _, r := range role.Rules {
			assert.Equal(t, []string{"secrets"}, r.Resources, "Role %s/%s", credentialsNS, role.Name)
		}
		err := c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: name}, &rbacv1.Role{})
		assert.True(t, apierrors.IsNotFound(err), "no Role %s in %s, where the product's keys are: %v", name, productNS, err)
	}
}

// The node pull listener reaches the proxy's Service with the proxy's serving CA only (the
// ConfigMap trust-manager copies from that Certificate's Secret), runs as the ServiceAccount the
// proxy accepts as a node forwarder, in connectors-node, and that ServiceAccount is bound to no
// role (docs/architecture.md "RBAC": nothing but its own token).
func TestInstallNodeListener(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	var ds appsv1.DaemonSet
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: nodeNS, Name: "connectors-node"}, &ds))
	spec := ds.Spec.Template.Spec
	node := spec.Containers[0]
	assert.True(t, spec.HostNetwork, "the runtime pulls from the node's loopback")
	assert.Equal(t, corev1.DNSClusterFirstWithHostNet, spec.DNSPolicy, "a hostNetwork pod needs this to resolve the proxy's .svc name")
	assert.Equal(t, "127.0.0.1:5050", argValue(node.Args, "--node-pull-address"))

	var manager appsv1.Deployment
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-manager"}, &manager))
	assert.Equal(t, argValue(manager.Spec.Template.Spec.Containers[0].Args, "--pull-host"), argValue(node.Args, "--node-pull-address"), "the webhook rewrites images to where the listener listens")
	assert.Equal(t, argValue(manager.Spec.Template.Spec.Containers[0].Args, "--proxy-address"), argValue(node.Args, "--upstream-proxy"), "the listener relays to the proxy's Service")

	var proxy appsv1.Deployment
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &proxy))
	assert.Equal(t, nodeNS+"/"+spec.ServiceAccountName, argValue(proxy.Spec.Template.Spec.Containers[0].Args, "--node-forwarders"))
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: nodeNS, Name: spec.ServiceAccountName}, &corev1.ServiceAccount{}))
	var proxyCert cmapi.Certificate
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &proxyCert))
	rendered := render(t, filepath.Join(root, "config", "default"))

	var tokenAudience, caFile string
	for _, v := range spec.Volumes {
		for _, m := range node.VolumeMounts {
			if m.Name != v.Name {
				continue
			}
			if v.Projected != nil && v.Projected.Sources[0].ServiceAccountToken != nil {
				tokenAudience = v.Projected.Sources[0].ServiceAccountToken.Audience
				assert.Equal(t, m.MountPath+"/"+v.Projected.Sources[0].ServiceAccountToken.Path, argValue(node.Args, "--token-file"))
			}
			assert.Nil(t, v.Secret, "no Secret of the product lives in %s", nodeNS)
			if v.ConfigMap != nil {
				require.Len(t, v.ConfigMap.Items, 1)
				assert.Equal(t, "ca.crt", v.ConfigMap.Items[0].Key)
				assert.Equal(t, []secretKey{{proxyCert.Spec.SecretName, "ca.crt"}}, bundleSources(t, rendered, v.ConfigMap.Name),
					"the listener trusts the proxy's serving CA only, never the interception CA")
				caFile = m.MountPath + "/" + v.ConfigMap.Items[0].Path
			}
		}
	}
	assert.Equal(t, "connectors-proxy", tokenAudience)
	assert.Equal(t, caFile, argValue(node.Args, "--upstream-ca-file"))

	for _, list := range []client.ObjectList{&rbacv1.ClusterRoleBindingList{}, &rbacv1.RoleBindingList{}} {
		require.NoError(t, c.List(ctx, list))
		var subjects []rbacv1.Subject
		switch l := list.(type) {
		case *rbacv1.ClusterRoleBindingList:
			for _, b := range l.Items {
				subjects = append(subjects, b.Subjects...)
			}
		case *rbacv1.RoleBindingList:
			for _, b := range l.Items {
				subjects = append(subjects, b.Subjects...)
			}
		}
		assert.NotContains(t, subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: spec.ServiceAccountName, Namespace: nodeNS}, "the node listener has no role")
	}
}

// applyDefault applies config/default server-side and returns a client that knows cert-manager's
// types.
func applyDefault(t *testing.T) client.Client {
	t.Helper()
	out, err := kubectl(t, "apply", "--server-side", "--field-manager="+fieldManager, "-k", filepath.Join(root, "config", "default"))
	require.NoError(t, err, out)
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, cmapi.AddToScheme(scheme))
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	require.NoError(t, err)
	return c
}

// The CSIDriver asks the kubelet for what the driver relies on, and the driver's DaemonSet, in
// connectors-node, mounts the proxy's serving CA and the interception CA as the ConfigMaps
// trust-manager copies from their Secrets' ca.crt, never a key, and renders exactly those files.
func TestInstallCSIDriver(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	var driver storagev1.CSIDriver
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-csi"}, &driver))
	assert.False(t, *driver.Spec.AttachRequired)
	assert.True(t, *driver.Spec.PodInfoOnMount)
	assert.True(t, *driver.Spec.RequiresRepublish)
	assert.Equal(t, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecycleEphemeral}, driver.Spec.VolumeLifecycleModes)
	require.Len(t, driver.Spec.TokenRequests, 1)
	assert.Equal(t, "connectors-proxy", driver.Spec.TokenRequests[0].Audience)
	assert.True(t, ptr.Deref(driver.Spec.ServiceAccountTokenInSecrets, false), "the kubelet passes the token in the request's secrets, which it does not log")

	var ds appsv1.DaemonSet
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: nodeNS, Name: "connectors-csi"}, &ds))
	rendered := render(t, filepath.Join(root, "config", "default"))
	driverCtr := ds.Spec.Template.Spec.Containers[0]
	var files []string
	var sources []secretKey
	for _, v := range ds.Spec.Template.Spec.Volumes {
		assert.Nil(t, v.Secret, "no Secret of the product lives in %s", nodeNS)
		if v.ConfigMap == nil {
			continue
		}
		require.Len(t, v.ConfigMap.Items, 1)
		assert.Equal(t, "ca.crt", v.ConfigMap.Items[0].Key)
		sources = append(sources, bundleSources(t, rendered, v.ConfigMap.Name)...)
		for _, m := range driverCtr.VolumeMounts {
			if m.Name == v.Name {
				files = append(files, m.MountPath+"/"+v.ConfigMap.Items[0].Path)
			}
		}
	}
	var proxyCert, interceptCA cmapi.Certificate
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &proxyCert))
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-intercept-ca"}, &interceptCA))
	assert.ElementsMatch(t, []secretKey{{proxyCert.Spec.SecretName, "ca.crt"}, {interceptCA.Spec.SecretName, "ca.crt"}}, sources,
		"ca.crt in every pod's volume: the proxy's serving CA and the interception CA")
	assert.ElementsMatch(t, files, strings.Split(argValue(driverCtr.Args, "--ca-bundle-files"), ","), "the driver reads the mounted CA files")
	var crb rbacv1.ClusterRoleBinding
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-csi"}, &crb))
	assert.Equal(t, []rbacv1.Subject{{Kind: "ServiceAccount", Name: ds.Spec.Template.Spec.ServiceAccountName, Namespace: nodeNS}}, crb.Subjects)
	var role rbacv1.ClusterRole
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: crb.RoleRef.Name}, &role))
	assert.False(t, grants(role, "", "serviceaccounts/token", "create"), "the driver cannot mint tokens")
	assert.False(t, grants(role, "", "secrets", "get"), "the driver reads no Secret")
}

func grants(role rbacv1.ClusterRole, group, resource, verb string) bool {
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == group && res == resource && v == verb {
						return true
					}
				}
			}
		}
	}
	return false
}

func findServicePort(svc corev1.Service, port int32) *corev1.ServicePort {
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			return &svc.Spec.Ports[i]
		}
	}
	return nil
}

func containerHasPort(c corev1.Container, name string) bool {
	for _, p := range c.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

func containsArg(args []string, want string) bool {
	for _, a := range args {
		if a == want {
			return true
		}
	}
	return false
}

func argValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// The NetworkPolicies select the product's pods, name only ports those pods serve, leave no
// served port unreachable, and admit and refuse what the README's security model says.
func TestInstallNetworkPolicies(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()

	var list networkingv1.NetworkPolicyList
	require.NoError(t, c.List(ctx, &list, client.InNamespace(productNS)))
	require.NotEmpty(t, list.Items, "config/default installs NetworkPolicies")
	pols := list.Items

	templates := productPodTemplates(t, c)
	manager := templates["connectors-manager"]
	proxy := templates["connectors-proxy"]
	require.NotNil(t, manager)
	require.NotNil(t, proxy)

	t.Run("every policy selects product pods and names only ports they serve", func(t *testing.T) {
		for _, pol := range pols {
			sel, err := metav1.LabelSelectorAsSelector(&pol.Spec.PodSelector)
			require.NoError(t, err, pol.Name)
			var selected []string
			for name, tmpl := range templates {
				if !sel.Matches(labels.Set(tmpl.Labels)) {
					continue
				}
				selected = append(selected, name)
				if tmpl.Spec.HostNetwork {
					continue // NetworkPolicy does not apply to hostNetwork pods
				}
				for _, rule := range pol.Spec.Ingress {
					for _, p := range rule.Ports {
						assert.True(t, podServesPort(tmpl.Spec, p), "policy %s admits port %s/%v, which no container of %s serves", pol.Name, protocolOf(p.Protocol), p.Port, name)
					}
				}
			}
			assert.NotEmpty(t, selected, "policy %s selects none of the product's pods (%v)", pol.Name, pol.Spec.PodSelector.MatchLabels)
		}
	})

	t.Run("no port the manager or the proxy serves is cut off", func(t *testing.T) {
		for _, tmpl := range []*corev1.PodTemplateSpec{manager, proxy} {
			for _, ctr := range tmpl.Spec.Containers {
				for _, port := range ctr.Ports {
					ok := false
					for _, src := range []netSource{externalIP("192.0.2.10"), podIn("team-a", nil), monitoring} {
						ok = ok || ingressAllowed(pols, tmpl.Labels, port, src)
					}
					assert.True(t, ok, "%s port %s (%d) is reachable from nowhere", ctr.Name, port.Name, port.ContainerPort)
				}
			}
		}
	})

	t.Run("manager: the API server reaches the webhook from any address", func(t *testing.T) {
		var svc corev1.Service
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-webhook"}, &svc))
		port := containerPort(manager.Spec, svc.Spec.Ports[0].TargetPort.String())
		require.NotNil(t, port, "the webhook Service's targetPort is a manager container port")
		assert.True(t, isolated(pols, manager.Labels, networkingv1.PolicyTypeIngress), "the manager's ingress is restricted")
		for _, src := range []string{"192.0.2.10", "10.0.0.2", "172.16.0.1"} {
			assert.True(t, ingressAllowed(pols, manager.Labels, *port, externalIP(src)), "webhook from %s", src)
		}
		health := containerPort(manager.Spec, "health")
		require.NotNil(t, health)
		assert.True(t, ingressAllowed(pols, manager.Labels, *health, externalIP("192.0.2.10")), "manager probes from anywhere (the kubelet)")
		assertMetricsOnlyFromMonitoring(t, pols, manager)
		assert.False(t, ingressAllowed(pols, manager.Labels, corev1.ContainerPort{ContainerPort: 9999, Protocol: corev1.ProtocolTCP}, podIn("team-a", nil)), "a port the manager does not serve is refused")
		assert.False(t, isolated(pols, manager.Labels, networkingv1.PolicyTypeEgress), "the manager's egress (API server, registries, the proxy) is not restricted")
	})

	t.Run("proxy: pods of every namespace reach its listeners, other sources only the reverse listener", func(t *testing.T) {
		assert.True(t, isolated(pols, proxy.Labels, networkingv1.PolicyTypeIngress))
		for _, name := range []string{"https", "forward", "forward-tls"} {
			p := containerPort(proxy.Spec, name)
			require.NotNil(t, p, name)
			for _, ns := range []string{"team-a", "ci", "kube-public"} {
				assert.True(t, ingressAllowed(pols, proxy.Labels, *p, podIn(ns, map[string]string{"app": "build"})), "%s from a pod in %s", name, ns)
			}
		}
		for _, name := range []string{"forward", "forward-tls"} {
			p := containerPort(proxy.Spec, name)
			assert.False(t, ingressAllowed(pols, proxy.Labels, *p, externalIP("192.0.2.10")), "%s is for pods only: a non-pod source is refused", name)
		}
		https := containerPort(proxy.Spec, "https")
		assert.True(t, ingressAllowed(pols, proxy.Labels, *https, externalIP("10.0.0.5")), "node pull listeners (hostNetwork, node addresses) reach the reverse listener")
		health := containerPort(proxy.Spec, "health")
		require.NotNil(t, health)
		assert.True(t, ingressAllowed(pols, proxy.Labels, *health, externalIP("192.0.2.10")), "proxy probes from anywhere (the kubelet)")
		assertMetricsOnlyFromMonitoring(t, pols, proxy)
		assert.False(t, ingressAllowed(pols, proxy.Labels, corev1.ContainerPort{ContainerPort: 9999, Protocol: corev1.ProtocolTCP}, podIn("team-a", nil)), "a port the proxy does not serve is refused")
	})

	t.Run("proxy egress: DNS, the API server and registries, never link-local", func(t *testing.T) {
		require.True(t, isolated(pols, proxy.Labels, networkingv1.PolicyTypeEgress), "the proxy's egress is restricted")
		allowed := []struct {
			ip    string
			port  int32
			proto corev1.Protocol
			what  string
		}{
			{"10.96.0.10", 53, corev1.ProtocolUDP, "cluster DNS"},
			{"10.96.0.10", 53, corev1.ProtocolTCP, "cluster DNS over TCP"},
			{"169.254.20.10", 53, corev1.ProtocolUDP, "NodeLocal DNSCache"},
			{"10.0.0.1", 6443, corev1.ProtocolTCP, "the API server"},
			{"172.18.0.2", 443, corev1.ProtocolTCP, "the API server on 443"},
			{"203.0.113.10", 443, corev1.ProtocolTCP, "a Harbor"},
			{"10.20.30.40", 8443, corev1.ProtocolTCP, "a Harbor on a private address and port"},
			{"2001:db8::10", 443, corev1.ProtocolTCP, "a Harbor over IPv6"},
		}
		for _, a := range allowed {
			assert.True(t, egressAllowed(pols, proxy.Labels, a.ip, a.port, a.proto), "%s (%s:%d/%s)", a.what, a.ip, a.port, a.proto)
		}
		refused := []struct {
			ip    string
			port  int32
			proto corev1.Protocol
		}{
			{"169.254.169.254", 80, corev1.ProtocolTCP},
			{"169.254.169.254", 443, corev1.ProtocolTCP},
			{"fe80::1", 443, corev1.ProtocolTCP},
			{"203.0.113.10", 123, corev1.ProtocolUDP},
		}
		for _, r := range refused {
			assert.False(t, egressAllowed(pols, proxy.Labels, r.ip, r.port, r.proto), "%s:%d/%s must be refused", r.ip, r.port, r.proto)
		}
	})
}

// monitoring is a Prometheus pod in a namespace labelled as README says (metrics=enabled).
var monitoring = podInLabelled("monitoring", map[string]string{"metrics": "enabled"}, map[string]string{"app": "prometheus"})

// assertMetricsOnlyFromMonitoring: the https-metrics port admits pods of namespaces labelled
// metrics=enabled, and nothing else (other namespaces' pods, other addresses).
func assertMetricsOnlyFromMonitoring(t *testing.T, pols []networkingv1.NetworkPolicy, tmpl *corev1.PodTemplateSpec) {
	t.Helper()
	p := containerPort(tmpl.Spec, "https-metrics")
	require.NotNil(t, p, "%s serves https-metrics", tmpl.Labels["app.kubernetes.io/name"])
	assert.True(t, ingressAllowed(pols, tmpl.Labels, *p, monitoring), "metrics from a namespace labelled metrics=enabled")
	for _, src := range []netSource{podIn("team-a", map[string]string{"app": "prometheus"}), podInLabelled("ci", map[string]string{"metrics": "disabled"}, nil), externalIP("192.0.2.10"), externalIP("10.0.0.5")} {
		assert.False(t, ingressAllowed(pols, tmpl.Labels, *p, src), "metrics from %+v must be refused", src)
	}
}

// The proxy scales on CPU: the HPA targets the proxy Deployment, every container requests CPU
// (utilisation is measured against requests), and the HPA, not the manifest, owns the replica
// count, so a re-apply of the install does not undo a scale-up.
func TestInstallProxyAutoscaling(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()

	var hpa autoscalingv2.HorizontalPodAutoscaler
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &hpa))
	ref := hpa.Spec.ScaleTargetRef
	assert.Equal(t, "apps/v1", ref.APIVersion)
	require.Equal(t, "Deployment", ref.Kind)
	var deploy appsv1.Deployment
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: ref.Name}, &deploy), "the HPA's scaleTargetRef resolves")
	assert.Equal(t, "connectors-proxy", deploy.Name)
	assert.Contains(t, containerImages(deploy.Spec.Template.Spec), images.CommittedImage("proxy"), "the HPA scales the proxy")

	require.NotNil(t, hpa.Spec.MinReplicas)
	assert.Equal(t, int32(2), *hpa.Spec.MinReplicas)
	assert.Equal(t, int32(10), hpa.Spec.MaxReplicas)
	cpu := false
	for _, m := range hpa.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil {
			cpu = true
			assert.Equal(t, int32(70), *m.Resource.Target.AverageUtilization)
		}
	}
	assert.True(t, cpu, "the HPA scales on CPU utilisation")

	for _, ctr := range append(append([]corev1.Container{}, deploy.Spec.Template.Spec.InitContainers...), deploy.Spec.Template.Spec.Containers...) {
		req, ok := ctr.Resources.Requests[corev1.ResourceCPU]
		assert.True(t, ok && !req.IsZero(), "container %s needs a CPU request for the HPA's utilisation", ctr.Name)
	}

	var pdb policyv1.PodDisruptionBudget
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &pdb))
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	require.NoError(t, err)
	require.True(t, sel.Matches(labels.Set(deploy.Spec.Template.Labels)))
	require.NotNil(t, pdb.Spec.MinAvailable)
	assert.Less(t, pdb.Spec.MinAvailable.IntValue(), int(*hpa.Spec.MinReplicas), "at the HPA's minimum a node drain can still evict a proxy pod")

	rendered := render(t, filepath.Join(root, "config", "default"))
	proxy := findRendered(rendered, "Deployment", productNS, "connectors-proxy")
	require.NotNil(t, proxy)
	_, has, _ := unstructured.NestedFieldNoCopy(proxy.Object, "spec", "replicas")
	assert.False(t, has, "the rendered proxy Deployment must leave spec.replicas to the HPA")
	manager := findRendered(rendered, "Deployment", productNS, "connectors-manager")
	require.NotNil(t, manager)
	replicas, has, _ := unstructured.NestedFieldNoCopy(manager.Object, "spec", "replicas")
	assert.True(t, has, "the manager keeps its fixed replicas (the patch removes only the proxy's)")
	assert.EqualValues(t, 2, replicas)
}

// config/samples is a kustomization of its own (the install runs nothing): a labelled demo
// namespace, a Connector and a Job whose pod template carries the connector annotation. The
// Job is valid for the API server, and the webhook's injection, run on it with the install's
// manager flags, gives it the forward proxy with no warning, so crane pulls the connector's
// image through the proxy.
func TestSamplesRender(t *testing.T) {
	ctx := context.Background()
	install := render(t, filepath.Join(root, "config", "default"))
	for _, obj := range install {
		assert.NotContains(t, []string{"Job", "CronJob", "Pod", "Connector"}, obj.GetKind(), "config/default must not run or configure workloads: %s/%s", obj.GetKind(), obj.GetName())
	}

	samples := render(t, filepath.Join(root, "config", "samples"))
	var ns corev1.Namespace
	nsObj := findRendered(samples, "Namespace", "", "demo")
	require.NotNil(t, nsObj, "the samples create namespace demo")
	fromUnstructured(t, nsObj, &ns)
	assert.Equal(t, "true", ns.Labels[policies.LabelProxyInject], "namespace demo opts in")

	var job batchv1.Job
	jobAt := -1
	for i, obj := range samples {
		if obj.GetKind() == "Job" {
			require.Equal(t, -1, jobAt, "one sample Job")
			jobAt = i
			fromUnstructured(t, obj, &job)
		}
	}
	require.NotEqual(t, -1, jobAt, "the samples hold a Job")
	assert.Equal(t, "demo", job.Namespace)
	value := job.Spec.Template.Annotations[policies.AnnotationConnector]
	assert.Equal(t, "harbor", value, "the Job's pod template carries the connector annotation")
	refs, err := policies.ParseConnectorAnnotation(value, job.Namespace)
	require.NoError(t, err)
	require.Len(t, refs, 1)

	connObj := findRendered(samples, "Connector", refs[0].Namespace, refs[0].Name)
	require.NotNil(t, connObj, "the samples hold the connector %s the Job names", refs[0])
	var conn v1alpha1.Connector
	fromUnstructured(t, connObj, &conn)
	assert.Less(t, indexOf(samples, connObj), jobAt, "the Connector is applied before the Job (the webhook refuses a Job naming a missing connector)")
	assert.Less(t, indexOf(samples, nsObj), indexOf(samples, connObj))
	require.NotNil(t, conn.Spec.Auth)
	secretObj := findRendered(samples, "Secret", conn.Namespace, conn.Spec.Auth.SecretRef.Name)
	require.NotNil(t, secretObj, "the Connector's Secret is in the samples")
	assert.Equal(t, string(corev1.SecretTypeBasicAuth), secretObj.Object["type"])

	t.Run("the API server accepts the samples", func(t *testing.T) {
		// A namespace without the opt-in label, so the webhook (if another test installed it) is
		// not called; the objects are validated and admitted, not stored.
		target := newNamespace(t)
		dryRun := func(obj client.Object) {
			obj.SetNamespace(target)
			obj.SetResourceVersion("")
			assert.NoError(t, k8s.Create(ctx, obj, client.DryRunAll), "%T %s", obj, obj.GetName())
		}
		var secret corev1.Secret
		fromUnstructured(t, secretObj, &secret)
		dryRun(&secret)
		dryRun(conn.DeepCopy())
		dryRun(job.DeepCopy())
	})

	t.Run("the injection gives crane the forward proxy for the connector's image", func(t *testing.T) {
		mgr := findRendered(install, "Deployment", productNS, "connectors-manager")
		require.NotNil(t, mgr)
		var manager appsv1.Deployment
		fromUnstructured(t, mgr, &manager)
		args := manager.Spec.Template.Spec.Containers[0].Args
		cfg := policies.InjectionConfig{ForwardProxyURL: argValue(args, "--forward-proxy-url"), PullHost: argValue(args, "--pull-host")}
		require.NotEmpty(t, cfg.ForwardProxyURL)

		tmpl := job.Spec.Template.DeepCopy()
		parts, err := policies.ParseInjectAnnotation(tmpl.Annotations[policies.AnnotationInject], false)
		require.NoError(t, err)
		out, err := policies.Inject(cfg, policies.Workload{Namespace: job.Namespace, Meta: &tmpl.ObjectMeta, Spec: &tmpl.Spec},
			[]policies.ResolvedConnector{{Ref: refs[0], Address: conn.Spec.Address}}, parts)
		require.NoError(t, err, "the webhook would deny the sample Job")
		assert.Empty(t, out.Warnings, "the sample Job draws no admission warning (e.g. a proxy variable of its own)")

		host, err := policies.RegistryHostOf(conn.Spec.Address)
		require.NoError(t, err)
		pulls := 0
		for _, ctr := range tmpl.Spec.Containers {
			env := map[string]string{}
			for _, e := range ctr.Env {
				env[e.Name] = e.Value
			}
			assert.Equal(t, cfg.ForwardProxyURL, env[policies.EnvHTTPSProxy], "%s gets the forward proxy", ctr.Name)
			script := strings.Join(append(append([]string{}, ctr.Command...), ctr.Args...), " ")
			if !strings.Contains(script, "crane pull") {
				continue
			}
			img, err := policies.ParseImage(env["IMAGE"])
			require.NoError(t, err, "the image crane pulls")
			assert.True(t, host.Matches(img.Domain), "crane pulls %s, which must be on the connector's registry %s for the proxy to intercept it", env["IMAGE"], host.Host)
			assert.Contains(t, script, `"$IMAGE"`)
			pulls++
		}
		assert.Equal(t, 1, pulls, "one container pulls with crane")
	})
}

// productPodTemplates returns the pod templates of the product's Deployments and DaemonSets by
// workload name.
func productPodTemplates(t *testing.T, c client.Client) map[string]*corev1.PodTemplateSpec {
	t.Helper()
	ctx := context.Background()
	out := map[string]*corev1.PodTemplateSpec{}
	var deploys appsv1.DeploymentList
	require.NoError(t, c.List(ctx, &deploys, client.InNamespace(productNS)))
	for i := range deploys.Items {
		out[deploys.Items[i].Name] = &deploys.Items[i].Spec.Template
	}
	var daemons appsv1.DaemonSetList
	require.NoError(t, c.List(ctx, &daemons, client.InNamespace(productNS)))
	for i := range daemons.Items {
		out[daemons.Items[i].Name] = &daemons.Items[i].Spec.Template
	}
	return out
}

func containerPort(spec corev1.PodSpec, name string) *corev1.ContainerPort {
	for _, ctr := range spec.Containers {
		for i := range ctr.Ports {
			if ctr.Ports[i].Name == name {
				p := ctr.Ports[i]
				return &p
			}
		}
	}
	return nil
}

func containerImages(spec corev1.PodSpec) []string {
	var out []string
	for _, ctr := range spec.Containers {
		out = append(out, ctr.Image)
	}
	return out
}

// render runs `kubectl kustomize` on a directory and returns its objects in output order.
func render(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := kube.Kustomize(env, dir)
	require.NoError(t, err)
	return objs
}

func findRendered(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, obj := range objs {
		if obj.GetKind() == kind && obj.GetNamespace() == namespace && obj.GetName() == name {
			return obj
		}
	}
	return nil
}

func indexOf(objs []*unstructured.Unstructured, want *unstructured.Unstructured) int {
	for i, obj := range objs {
		if obj == want {
			return i
		}
	}
	return -1
}

// fromUnstructured converts strictly: a field the typed object does not know fails the test.
func fromUnstructured(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	raw, err := json.Marshal(obj.Object)
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(into), "%s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName())
}
