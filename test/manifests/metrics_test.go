package manifests_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The manager's and the proxy's metrics are served as kubebuilder projects serve them: over
// HTTPS on a container port named https-metrics, behind a ServiceMonitor-ready Service (label
// app.kubernetes.io/component=metrics, port https-metrics); the accounts that serve them may ask
// the API server about callers (TokenReview, SubjectAccessReview), and a scraper needs the
// ClusterRole connectors-metrics-reader. config/prometheus's ServiceMonitor selects both Services.
// (cmd/internal/wiring's TestMetricsNeedATokenAllowedToReadThem sends the requests.)
func TestInstallMetrics(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	var services []corev1.Service
	for _, name := range []string{"connectors-manager", "connectors-proxy"} {
		t.Run(name, func(t *testing.T) {
			var deploy appsv1.Deployment
			require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: name}, &deploy))
			ctr := deploy.Spec.Template.Spec.Containers[0]
			assert.NotContains(t, ctr.Args, "--metrics-secure=false")
			port := containerPort(deploy.Spec.Template.Spec, "https-metrics")
			require.NotNil(t, port)
			addr := argValue(ctr.Args, "--metrics-bind-address")
			assert.Equal(t, ":"+strconv.Itoa(int(port.ContainerPort)), addr, "the container port is where the binary serves metrics")
			assert.Nil(t, containerPort(deploy.Spec.Template.Spec, "metrics"), "no plain-HTTP metrics port is left")

			var svc corev1.Service
			require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: name + "-metrics"}, &svc))
			services = append(services, svc)
			assert.Equal(t, "metrics", svc.Labels["app.kubernetes.io/component"])
			assert.Equal(t, "harbor-connector", svc.Labels["app.kubernetes.io/part-of"])
			assert.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deploy.Spec.Template.Labels)), "the Service selects the %s pods", name)
			require.Len(t, svc.Spec.Ports, 1)
			assert.Equal(t, "https-metrics", svc.Spec.Ports[0].Name)
			assert.Equal(t, "https-metrics", svc.Spec.Ports[0].TargetPort.String())

			var crb rbacv1.ClusterRoleBinding
			require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-metrics-auth"}, &crb))
			assert.Contains(t, crb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: deploy.Spec.Template.Spec.ServiceAccountName, Namespace: productNS})
			var role rbacv1.ClusterRole
			require.NoError(t, c.Get(ctx, client.ObjectKey{Name: crb.RoleRef.Name}, &role))
			assert.True(t, grants(role, "authentication.k8s.io", "tokenreviews", "create"))
			assert.True(t, grants(role, "authorization.k8s.io", "subjectaccessreviews", "create"))
		})
	}

	var reader rbacv1.ClusterRole
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "connectors-metrics-reader"}, &reader))
	assert.Equal(t, []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}, reader.Rules)
	var crbs rbacv1.ClusterRoleBindingList
	require.NoError(t, c.List(ctx, &crbs))
	for _, b := range crbs.Items {
		assert.NotEqual(t, "connectors-metrics-reader", b.RoleRef.Name, "the install binds the reader role to no one (%s)", b.Name)
	}

	monitoring := render(t, filepath.Join(root, "config", "prometheus"))
	require.Len(t, monitoring, 2, "a ServiceMonitor and the alerting rules")
	require.NotNil(t, findRendered(monitoring, "PrometheusRule", productNS, "connectors-alerts"), "test/tools/promrules checks the rules themselves")
	sm := findRendered(monitoring, "ServiceMonitor", productNS, "connectors-metrics")
	require.NotNil(t, sm)
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	require.Len(t, endpoints, 1)
	ep := endpoints[0].(map[string]any)
	assert.Equal(t, "https-metrics", ep["port"])
	assert.Equal(t, "https", ep["scheme"])
	assert.NotEmpty(t, ep["bearerTokenFile"], "Prometheus presents its token")
	assert.Equal(t, true, ep["honorLabels"], "connectors_connector_ready keeps the Connector's namespace label")
	require.Len(t, services, 2)
	for _, svc := range services {
		assert.True(t, labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels)), "the ServiceMonitor selects %s", svc.Name)
		assert.Equal(t, sm.GetNamespace(), svc.Namespace)
	}
}
