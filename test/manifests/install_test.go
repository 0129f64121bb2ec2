package manifests_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/webhook"
)

const productNS = "connectors-system"

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

	t.Run("webhook clientConfig reaches the manager", func(t *testing.T) {
		require.Len(t, mwc.Webhooks, 4)
		for _, wh := range mwc.Webhooks {
			svcRef := wh.ClientConfig.Service
			require.NotNil(t, svcRef, wh.Name)
			assert.Contains(t, []string{webhook.PodsPath, webhook.JobsPath}, *svcRef.Path, "%s path must be one the manager serves", wh.Name)
			var svc corev1.Service
			require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: svcRef.Namespace, Name: svcRef.Name}, &svc), wh.Name)
			assert.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deploy.Spec.Template.Labels)), "Service %s selects the manager pods", svc.Name)
			port := findServicePort(svc, *svcRef.Port)
			require.NotNil(t, port, "Service %s has port %d", svc.Name, *svcRef.Port)
			assert.True(t, containerHasPort(manager, port.TargetPort.String()), "manager container exposes %s", port.TargetPort.String())
		}
	})

	t.Run("cert-manager serves and injects the webhook certificate", func(t *testing.T) {
		ref := mwc.Annotations["cert-manager.io/inject-ca-from"]
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
		assert.Contains(t, vap.Spec.Variables[0].Expression, "'"+pullHost+"/'", "the policy's pull host must equal the manager's --pull-host")
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
	assert.GreaterOrEqual(t, *proxy.Spec.Replicas, int32(2))
	container := proxy.Spec.Template.Spec.Containers[0]
	var svc corev1.Service
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &svc))
	assert.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(proxy.Spec.Template.Labels)))
	port := findServicePort(svc, 443)
	require.NotNil(t, port)
	assert.True(t, containerHasPort(container, port.TargetPort.String()))

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

// applyDefault applies config/default server-side and returns a client that knows cert-manager's
// types.
func applyDefault(t *testing.T) client.Client {
	t.Helper()
	out, err := kubectl(t, "apply", "--server-side", "--field-manager=harbor-connector-test", "-k", filepath.Join(root, "config", "default"))
	require.NoError(t, err, out)
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, cmapi.AddToScheme(scheme))
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	require.NoError(t, err)
	return c
}

// The CSIDriver asks the kubelet for what the driver relies on, and the driver's DaemonSet never
// mounts the interception CA's key.
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

	var ds appsv1.DaemonSet
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-csi"}, &ds))
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "connectors-intercept-ca" {
			require.Len(t, v.Secret.Items, 1)
			assert.Equal(t, "ca.crt", v.Secret.Items[0].Key, "the driver gets the CA certificate, never its key")
		}
	}
	var crb rbacv1.ClusterRoleBinding
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-csi"}, &crb))
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
