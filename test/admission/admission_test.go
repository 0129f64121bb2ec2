package admission_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

const harborImage = "harbor.example.com/team/app:v1"

func job(ns, name string, labels, annotations map[string]string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "build", Image: harborImage}},
		}}},
	}
}

func pod(ns, name string, labels, annotations map[string]string, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

var annotated = map[string]string{policies.AnnotationConnector: "harbor"}

func assertInjected(t *testing.T, meta metav1.ObjectMeta, spec corev1.PodSpec, ns string) {
	t.Helper()
	assert.Equal(t, "true", meta.Labels[policies.LabelProxyInjected])
	assert.Contains(t, meta.Annotations[policies.AnnotationStatus], `"connectors":["`+ns+`/harbor"]`)
	assert.Equal(t, "127.0.0.1:5050/namespaces/"+ns+"/connectors/harbor/team/app:v1", spec.Containers[0].Image)
	assert.Equal(t, corev1.PullAlways, spec.Containers[0].ImagePullPolicy)
	require.Len(t, spec.Volumes, 1)
	assert.Equal(t, policies.CSIDriverName, spec.Volumes[0].CSI.Driver)
	var names []string
	for _, e := range spec.Containers[0].Env {
		names = append(names, e.Name)
		assert.NotContains(t, strings.ToLower(e.Value), "password")
	}
	assert.Contains(t, names, "HTTPS_PROXY")
}

func assertUntouched(t *testing.T, meta metav1.ObjectMeta, spec corev1.PodSpec) {
	t.Helper()
	assert.NotContains(t, meta.Annotations, policies.AnnotationStatus)
	assert.Equal(t, harborImage, spec.Containers[0].Image)
	assert.Empty(t, spec.Volumes)
}

func counter(kind, op, result string) float64 {
	families, _ := metrics.Registry.Gather()
	for _, f := range families {
		if f.GetName() != "connectors_webhook_admissions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["operation"] == op && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// A Job in an opted-in namespace has its template mutated; the Pod the job controller would
// create from it passes the Pod webhook with an empty patch.
func TestJobInOptedInNamespace(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	j := job(ns, "build", nil, annotated)
	require.NoError(t, k8s.Create(ctx, j))
	assertInjected(t, j.Spec.Template.ObjectMeta, j.Spec.Template.Spec, ns)
	assert.Equal(t, "harbor", j.Spec.Template.Annotations[policies.AnnotationConnector], "the Job's annotation is copied into the template")

	before := counter("Pod", "CREATE", "unchanged")
	p := &corev1.Pod{
		ObjectMeta: *j.Spec.Template.ObjectMeta.DeepCopy(),
		Spec:       *j.Spec.Template.Spec.DeepCopy(),
	}
	p.Namespace, p.GenerateName = ns, "build-"
	require.NoError(t, k8s.Create(ctx, p))
	assert.Equal(t, before+1, counter("Pod", "CREATE", "unchanged"), "the Pod webhook was called and returned an empty patch")
	assert.Equal(t, j.Spec.Template.Spec.Containers[0].Image, p.Spec.Containers[0].Image)
	assert.Equal(t, j.Spec.Template.Spec.Containers[0].Env, p.Spec.Containers[0].Env)
	assert.Equal(t, j.Spec.Template.Spec.Volumes, p.Spec.Volumes)
}

// In a namespace without the label, only objects that opt in themselves are mutated.
func TestObjectOptIn(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, nil)
	in := pod(ns, "in", map[string]string{policies.LabelProxyInject: "true"}, annotated, harborImage)
	require.NoError(t, k8s.Create(ctx, in))
	assertInjected(t, in.ObjectMeta, in.Spec, ns)

	plain := pod(ns, "plain", nil, annotated, harborImage)
	require.NoError(t, k8s.Create(ctx, plain))
	assertUntouched(t, plain.ObjectMeta, plain.Spec)

	j := job(ns, "build", map[string]string{policies.LabelProxyInject: "true"}, annotated)
	require.NoError(t, k8s.Create(ctx, j))
	assertInjected(t, j.Spec.Template.ObjectMeta, j.Spec.Template.Spec, ns)
	assert.Equal(t, "true", j.Spec.Template.Labels[policies.LabelProxyInject], "the Job's opt-in label is copied into the template")
}

func TestOptOutAndExcludedNamespaces(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	out := pod(ns, "out", map[string]string{policies.LabelProxyInject: "false"}, annotated, harborImage)
	require.NoError(t, k8s.Create(ctx, out))
	assertUntouched(t, out.ObjectMeta, out.Spec)

	disabled := namespace(t, map[string]string{policies.LabelProxyInject: "false"})
	p := pod(disabled, "in", map[string]string{policies.LabelProxyInject: "true"}, annotated, harborImage)
	require.NoError(t, k8s.Create(ctx, p))
	assertUntouched(t, p.ObjectMeta, p.Spec)

	for _, name := range []string{"kube-system", "connectors-system", "connectors-node"} {
		nsObj := &corev1.Namespace{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: name}, nsObj); err != nil {
			nsObj = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
			require.NoError(t, k8s.Create(ctx, nsObj))
		}
		nsObj.Labels = map[string]string{policies.LabelProxyInject: "true"}
		require.NoError(t, k8s.Update(ctx, nsObj))
		p := pod(name, "excluded", map[string]string{policies.LabelProxyInject: "true"}, annotated, harborImage)
		require.NoError(t, k8s.Create(ctx, p), "the webhook is never called for %s", name)
		assertUntouched(t, p.ObjectMeta, p.Spec)
	}
}

func TestDenials(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	other := namespace(t, nil)

	err := k8s.Create(ctx, pod(ns, "unknown", nil, map[string]string{policies.AnnotationConnector: "nope"}, harborImage))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "denied the request")
	assert.Contains(t, err.Error(), "names connector "+ns+"/nope, which does not exist: create the Connector or fix the annotation")

	err = k8s.Create(ctx, job(ns, "foreign", nil, map[string]string{policies.AnnotationConnector: other + "/harbor"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connector "+other+"/harbor is not visible from namespace "+ns)

	err = k8s.Create(ctx, pod(ns, "malformed", nil, map[string]string{policies.AnnotationConnector: "a/b/c"}, harborImage))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `annotation connectors.cpaas.io/connector="a/b/c"`)
}

// A connector created in the same second as the workload is found by the live read past the
// cache.
func TestConnectorCreatedJustBefore(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "adm-", Labels: map[string]string{policies.LabelProxyInject: "true"}}}
	require.NoError(t, k8s.Create(ctx, ns))
	c := connectorObject(ns.Name, "fresh", "https://harbor.example.com")
	require.NoError(t, k8s.Create(ctx, c))
	p := pod(ns.Name, "fast", nil, map[string]string{policies.AnnotationConnector: "fresh"}, harborImage)
	require.NoError(t, k8s.Create(ctx, p))
	assert.Equal(t, "127.0.0.1:5050/namespaces/"+ns.Name+"/connectors/fresh/team/app:v1", p.Spec.Containers[0].Image)
}

// kubectl shows the webhook's warnings (connector not Ready).
func TestWarningsReachKubectl(t *testing.T) {
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	connector(t, ns, "broken", "https://broken.example.com", false)
	manifest := writeManifest(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: warned
  namespace: %s
  annotations: {connectors.cpaas.io/connector: broken}
spec:
  containers: [{name: app, image: broken.example.com/team/app:v1}]
`, ns))
	out, err := kubectl("apply", "-f", manifest)
	require.NoError(t, err, out)
	assert.Contains(t, out, "Warning: connector "+ns+"/broken is not Ready (Unauthorized: set by the test)")
}

// Re-applying the original manifests changes nothing: client-side apply, server-side apply and
// kubectl diff all see the live, mutated objects as matching the manifest.
func TestGitOpsReapplyIsNoOp(t *testing.T) {
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	manifest := writeManifest(t, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: csa-job
  namespace: %[1]s
  annotations: {connectors.cpaas.io/connector: harbor}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: build, image: %[2]s}]
---
apiVersion: v1
kind: Pod
metadata:
  name: csa-pod
  namespace: %[1]s
  annotations: {connectors.cpaas.io/connector: harbor}
spec:
  containers: [{name: app, image: %[2]s}]
`, ns, harborImage))
	ssaManifest := strings.ReplaceAll(readFile(t, manifest), "csa-", "ssa-")
	ssa := writeManifest(t, ssaManifest)

	out, err := kubectl("apply", "-f", manifest)
	require.NoError(t, err, out)
	out, err = kubectl("apply", "--server-side", "--field-manager=gitops", "-f", ssa)
	require.NoError(t, err, out)
	versions := resourceVersions(t, ns)

	// kubectl sends the manifest's image (it differs from the live, rewritten one) and may print
	// "configured"; the webhook re-applies the same mutation, so the stored objects stay as they
	// are (resource versions compared below).
	out, err = kubectl("apply", "-f", manifest)
	require.NoError(t, err, out)
	out, err = kubectl("apply", "--server-side", "--field-manager=gitops", "-f", ssa)
	require.NoError(t, err, out)
	out, err = kubectl("diff", "-f", manifest)
	assert.NoError(t, err, "kubectl diff exits 0 when there is no difference:\n%s", out)
	assert.Empty(t, strings.TrimSpace(out))
	out, err = kubectl("diff", "--server-side", "--field-manager=gitops", "-f", ssa)
	assert.NoError(t, err, "server-side kubectl diff:\n%s", out)

	assert.Equal(t, versions, resourceVersions(t, ns), "re-applying must not write the objects")
	var j batchv1.Job
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ssa-job"}, &j))
	assertInjected(t, j.Spec.Template.ObjectMeta, j.Spec.Template.Spec, ns)
	var p corev1.Pod
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ssa-pod"}, &p))
	assertInjected(t, p.ObjectMeta, p.Spec, ns)
}

// A dry run returns the mutated object and stores nothing.
func TestServerDryRun(t *testing.T) {
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	manifest := writeManifest(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: dry, namespace: %s, annotations: {connectors.cpaas.io/connector: harbor}}
spec:
  containers: [{name: app, image: %s}]
`, ns, harborImage))
	out, err := kubectl("create", "--dry-run=server", "-o", "yaml", "-f", manifest)
	require.NoError(t, err, out)
	assert.Contains(t, out, "127.0.0.1:5050/namespaces/"+ns+"/connectors/harbor/team/app:v1")
	err = k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "dry"}, &corev1.Pod{})
	assert.True(t, client.IgnoreNotFound(err) == nil && err != nil, "nothing stored")
}

// A hand-written pull-host image without the webhook's status annotation is refused by the
// ValidatingAdmissionPolicy, in any namespace.
func TestHandWrittenPullHostImageRejected(t *testing.T) {
	ns := namespace(t, nil)
	image := "127.0.0.1:5050/namespaces/someone-else/connectors/harbor/team/app:v1"
	var err error
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		err = k8s.Create(context.Background(), pod(ns, fmt.Sprintf("forged-%d", i), nil, nil, image))
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // the policy informer may not have the policy yet
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "image "+image+" points at the harbor-connector pull host, but the pod was not mutated by the connectors webhook")
}

func connectorObject(ns, name, address string) client.Object {
	return &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassHarbor, Address: address},
	}
}

func writeManifest(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "manifest.yaml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func resourceVersions(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var jobs batchv1.JobList
	require.NoError(t, k8s.List(context.Background(), &jobs, client.InNamespace(ns)))
	for _, j := range jobs.Items {
		out["job/"+j.Name] = j.ResourceVersion
	}
	var pods corev1.PodList
	require.NoError(t, k8s.List(context.Background(), &pods, client.InNamespace(ns)))
	for _, p := range pods.Items {
		out["pod/"+p.Name] = p.ResourceVersion
	}
	return out
}

// Deleting a Connector must not block updates of the objects mutated for it: the Job
// controller removes its tracking finalizer from finished pods with an UPDATE, and a denial
// would leave them Terminating until the Connector came back. Creation is still denied.
func TestUpdateAfterConnectorDeleted(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	p := pod(ns, "finalized", nil, annotated, harborImage)
	p.Finalizers = []string{"batch.kubernetes.io/job-tracking"}
	must(t, k8s.Create(ctx, p))
	assertInjected(t, p.ObjectMeta, p.Spec, ns)
	rewritten := p.Spec.Containers[0].Image

	must(t, k8s.Delete(ctx, &v1alpha1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor"}}))
	require.Eventually(t, func() bool {
		return k8s.Create(ctx, pod(ns, "after-delete", nil, annotated, harborImage)) != nil
	}, 10*time.Second, 100*time.Millisecond, "new workloads naming the deleted connector are denied")

	p.Finalizers = nil
	require.NoError(t, k8s.Update(ctx, p), "removing the finalizer must be admitted")
	assert.Equal(t, rewritten, p.Spec.Containers[0].Image, "admitted unchanged")
	out, err := kubectl("label", "pod", "-n", ns, "finalized", "touched=yes")
	require.NoError(t, err, out)
	assert.Contains(t, out, "Warning: admitted unchanged: annotation connectors.cpaas.io/connector names connector "+ns+"/harbor, which does not exist")
}

// A Pod an earlier version mutated mounts the CA file (subPath ca.crt) at
// certs.d/<host>/ca.crt, where this version mounts the CA directory. A Pod's containers cannot
// change, so the re-mutation of its updates keeps that mount: otherwise the API server would
// refuse every update of it, the Job controller's finalizer removal included.
func TestEarlierVersionsPodKeepsItsCAFileMount(t *testing.T) {
	ctx := context.Background()
	// Not opted in, so the Pod is stored as the earlier version left it. Its own annotation map:
	// Inject writes into it.
	ns := namespace(t, nil)
	p := pod(ns, "earlier", nil, map[string]string{policies.AnnotationConnector: "harbor"}, harborImage)
	p.Finalizers = []string{"batch.kubernetes.io/job-tracking"}
	_, err := policies.Inject(injection, policies.Workload{Namespace: ns, Meta: &p.ObjectMeta, Spec: &p.Spec},
		[]policies.ResolvedConnector{{Ref: policies.ConnectorRef{Namespace: ns, Name: "harbor"}, Address: "https://harbor.example.com"}}, policies.AllParts)
	require.NoError(t, err)
	mounts := p.Spec.Containers[0].VolumeMounts
	require.Len(t, mounts, 2)
	require.Equal(t, policies.DirContainersCA, mounts[1].SubPath)
	mounts[1].SubPath, mounts[1].MountPath = policies.FileCACert, mounts[1].MountPath+"/"+policies.FileCACert
	must(t, k8s.Create(ctx, p))
	legacy := p.Spec.Containers[0].VolumeMounts

	// The object opt-in label brings the update to the Pod webhook at once (a namespace label
	// reaches the API server's webhook selector through its informer).
	before := counter("Pod", "UPDATE", "unchanged")
	p.Labels[policies.LabelProxyInject] = "true"
	p.Finalizers = nil
	require.NoError(t, k8s.Update(ctx, p), "removing the finalizer must be admitted")
	assert.Equal(t, before+1, counter("Pod", "UPDATE", "unchanged"), "the Pod webhook re-mutated the update with an empty patch")
	assert.Equal(t, legacy, p.Spec.Containers[0].VolumeMounts)
}
