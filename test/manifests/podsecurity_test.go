package manifests_test

// What the API server's admission would do with the pods the install's workloads create
// (PodSecurity, Priority, ResourceQuota, the product's own policies), and what the kubelet checks
// of their security contexts, without a node: each pod template becomes a Pod, created with a
// server-side dry run.

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// workload is a Deployment or DaemonSet of the rendered install.
type workload struct {
	kind, namespace, name string
	template              corev1.PodTemplateSpec
}

// nodeAgent: a DaemonSet runs on every node with host access, in connectors-node; the other
// workloads run in connectors-system and must meet PodSecurity "restricted".
func (w workload) nodeAgent() bool { return w.kind == "DaemonSet" }

// renderedWorkloads returns the Deployments and DaemonSets of config/default as rendered.
func renderedWorkloads(t *testing.T) []workload {
	t.Helper()
	var out []workload
	for _, obj := range render(t, filepath.Join(root, "config", "default")) {
		w := workload{kind: obj.GetKind(), namespace: obj.GetNamespace(), name: obj.GetName()}
		switch w.kind {
		case "Deployment":
			var d appsv1.Deployment
			fromUnstructured(t, obj, &d)
			w.template = d.Spec.Template
		case "DaemonSet":
			var d appsv1.DaemonSet
			fromUnstructured(t, obj, &d)
			w.template = d.Spec.Template
		default:
			continue
		}
		out = append(out, w)
	}
	require.Len(t, out, 4, "manager, proxy, node listener, CSI driver")
	return out
}

// pod is what the workload's controller would create from its template in namespace.
func (w workload) pod(namespace string) *corev1.Pod {
	tmpl := w.template.DeepCopy()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: w.name + "-", Namespace: namespace, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       tmpl.Spec,
	}
}

// Every workload's pod is admitted in its own namespace with no warning: PodSecurity at the
// namespace's level, the Priority plugin resolves its class to the built-in value, and
// ResourceQuota admits the system-* classes (the test API server limits them as GKE does,
// testdata/admission.yaml, so the install's ResourceQuota is what admits them).
func TestInstallPodsAdmitted(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	observeQuotas(t, c, productNS)
	observeQuotas(t, c, nodeNS)
	wc, warnings := warningClient(t)
	wantClass := map[string]string{
		"connectors-manager": "system-cluster-critical", // serves the fail-closed webhook
		"connectors-proxy":   "",
		"connectors-node":    "system-node-critical",
		"connectors-csi":     "system-node-critical",
	}
	for _, w := range renderedWorkloads(t) {
		t.Run(w.name, func(t *testing.T) {
			pod := w.pod(w.namespace)
			want, known := wantClass[w.name]
			require.True(t, known, "decide the priority class of %s here", w.name)
			assert.Equal(t, want, pod.Spec.PriorityClassName)

			before := len(warnings.list())
			require.NoError(t, wc.Create(ctx, pod, client.DryRunAll), "%s's pod in %s", w.name, w.namespace)
			assert.Empty(t, warnings.list()[before:], "%s's pod draws warnings", w.name)
			if want != "" {
				var pc schedulingv1.PriorityClass
				require.NoError(t, c.Get(ctx, client.ObjectKey{Name: want}, &pc), "a built-in class")
				assert.Equal(t, pc.Value, ptr.Deref(pod.Spec.Priority, 0), "the Priority plugin resolved %s", want)
			}
		})
	}

	t.Run("without the install's quota a system-* class is refused", func(t *testing.T) {
		for _, w := range renderedWorkloads(t) {
			if w.template.Spec.PriorityClassName == "" {
				continue
			}
			err := k8s.Create(ctx, w.pod(newNamespace(t)), client.DryRunAll)
			require.Error(t, err, "%s outside %s: the test API server must limit the system-* classes", w.name, productNS)
			assert.Contains(t, err.Error(), "insufficient quota to match these scopes")
		}
	})
}

// connectors-system enforces PodSecurity "restricted": the manager's and the proxy's pods are
// admitted there with no warning, pods that break "restricted" are refused there (so the check
// can fail), and so are the node agents' pods, which need host access and are admitted only in
// connectors-node (TestInstallPodsAdmitted).
func TestInstallRestrictedPodSecurity(t *testing.T) {
	c := applyDefault(t)
	ctx := context.Background()
	observeQuotas(t, c, productNS)
	var ns corev1.Namespace
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: productNS}, &ns))
	assert.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
	wc, warnings := warningClient(t)
	var manager *workload
	checked, agents := 0, 0
	for _, w := range renderedWorkloads(t) {
		if w.nodeAgent() {
			agents++
			assert.Equal(t, nodeNS, w.namespace, "%s runs in the node agents' namespace", w.name)
			err := k8s.Create(ctx, w.pod(productNS), client.DryRunAll)
			require.Error(t, err, "%s's pod in %s", w.name, productNS)
			assert.True(t, apierrors.IsForbidden(err), "%v", err)
			assert.Contains(t, err.Error(), `violates PodSecurity "restricted:latest"`, "%s's pod in %s", w.name, productNS)
			continue
		}
		if w.name == "connectors-manager" {
			manager = &w
		}
		checked++
		assert.Equal(t, productNS, w.namespace, "%s runs in the restricted namespace", w.name)
		before := len(warnings.list())
		assert.NoError(t, wc.Create(ctx, w.pod(productNS), client.DryRunAll), "%s under restricted", w.name)
		assert.Empty(t, warnings.list()[before:], "%s under restricted draws warnings", w.name)
	}
	assert.Equal(t, 2, checked, "the manager and the proxy")
	assert.Equal(t, 2, agents, "the CSI driver and the node listener")
	require.NotNil(t, manager)

	breaks := map[string]func(*corev1.PodSpec){
		"seccompProfile": func(s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = nil },
		"runAsNonRoot":   func(s *corev1.PodSpec) { s.SecurityContext.RunAsNonRoot = nil },
		"allowPrivilegeEscalation": func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
		},
		"unrestricted capabilities": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities = nil },
		"host namespaces":           func(s *corev1.PodSpec) { s.HostNetwork = true },
	}
	for want, mutate := range breaks {
		t.Run("refused: "+want, func(t *testing.T) {
			pod := manager.pod(productNS)
			mutate(&pod.Spec)
			err := k8s.Create(ctx, pod, client.DryRunAll)
			require.Error(t, err)
			assert.True(t, apierrors.IsForbidden(err), "%v", err)
			assert.Contains(t, err.Error(), `violates PodSecurity "restricted:latest"`)
			assert.Contains(t, err.Error(), want)
		})
	}
}

// observeQuotas fills in the status of a namespace's ResourceQuotas as kube-controller-manager's
// quota controller would (the test bed runs none): hard as specified, nothing used yet.
func observeQuotas(t *testing.T, c client.Client, namespace string) {
	t.Helper()
	ctx := context.Background()
	var list corev1.ResourceQuotaList
	require.NoError(t, c.List(ctx, &list, client.InNamespace(namespace)))
	require.NotEmpty(t, list.Items, "ResourceQuotas in %s", namespace)
	for i := range list.Items {
		q := &list.Items[i]
		q.Status.Hard = q.Spec.Hard.DeepCopy()
		q.Status.Used = corev1.ResourceList{}
		for name := range q.Spec.Hard {
			q.Status.Used[name] = resource.MustParse("0")
		}
		require.NoError(t, c.Status().Update(ctx, q), "ResourceQuota %s/%s", namespace, q.Name)
	}
}
