package webhook

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/alauda/harbor-connector/policies"
)

const (
	rewrittenA       = "127.0.0.1:5050/namespaces/team-a/connectors/harbor/team/app:v1"
	rewrittenB       = "127.0.0.1:5050/namespaces/team-b/connectors/private/team/app:v1"
	rewrittenShared  = "127.0.0.1:5050/namespaces/alpha/connectors/shared/team/app:v1"
	statusA          = `{"connectors":["team-a/harbor"],"images":{"app":"harbor.example.com/team/app:v1"}}`
	statusB          = `{"connectors":["team-b/private"]}`
	statusShared     = `{"connectors":["alpha/shared"]}`
	statusPublicProj = `{"connectors":["alpha/shared","kube-public/public","team-a/harbor"]}`
)

// validatorPod is a Pod in team-a with the given status annotation ("" for none) and images.
func validatorPod(status string, images ...string) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "team-a"},
	}
	if status != "" {
		p.Annotations = map[string]string{policies.AnnotationStatus: status}
	}
	for i, img := range images {
		name := "app"
		if i > 0 {
			name = "c" + string(rune('0'+i))
		}
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Image: img})
	}
	return p
}

// validator serves world.yaml without the removed connectors ("<ns>/<name>"), and with the
// namespaces' labels replaced where relabel says.
func validator(t *testing.T, remove []string, relabel map[string]map[string]string) *PodValidator {
	t.Helper()
	w := loadInjector(t).Lookup.(*memoryLookup).w
	var kept = w.Connectors[:0:0]
	for _, c := range w.Connectors {
		if !contains(remove, c.Namespace+"/"+c.Name) {
			kept = append(kept, c)
		}
	}
	w.Connectors = kept
	for i := range w.Namespaces {
		if labels, ok := relabel[w.Namespaces[i].Name]; ok {
			w.Namespaces[i].Labels = labels
		}
	}
	return &PodValidator{PullHost: testConfig.PullHost, Lookup: &memoryLookup{w: w}}
}

func validatePod(t *testing.T, v *PodValidator, op admissionv1.Operation, subResource string, pod, old *corev1.Pod) admission.Response {
	t.Helper()
	raw, err := json.Marshal(pod)
	require.NoError(t, err)
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "validate", Operation: op, Namespace: pod.Namespace, Name: pod.Name, SubResource: subResource,
		Object: runtime.RawExtension{Raw: raw},
	}}
	if old != nil {
		oldRaw, err := json.Marshal(old)
		require.NoError(t, err)
		req.OldObject = runtime.RawExtension{Raw: oldRaw}
	}
	return v.Handle(context.Background(), req)
}

func message(resp admission.Response) string {
	if resp.Result == nil {
		return ""
	}
	return resp.Result.Message
}

func TestPodValidatorCreate(t *testing.T) {
	v := validator(t, nil, nil)
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		allow bool
		want  string // part of the denial
	}{
		{name: "ordinary pod", pod: validatorPod("", "harbor.example.com/team/app:v1", "nginx"), allow: true},
		{name: "mutated pod", pod: validatorPod(statusA, rewrittenA, "nginx"), allow: true},
		{name: "connectors of the project and kube-public", pod: validatorPod(statusPublicProj, rewrittenA, rewrittenShared,
			"127.0.0.1:5050/namespaces/kube-public/connectors/public/library/nginx"), allow: true},
		{name: "status without images", pod: validatorPod(statusA, "nginx"), allow: true},
		{name: "status names another namespace's connector", pod: validatorPod(statusB, rewrittenB),
			want: "annotation connectors.cpaas.io/proxy-inject-status names connector team-b/private: connector team-b/private is not visible from namespace team-a"},
		{name: "status names another namespace's connector, no image", pod: validatorPod(statusB, "nginx"),
			want: "names connector team-b/private: connector team-b/private is not visible from namespace team-a"},
		{name: "status names a connector that does not exist", pod: validatorPod(`{"connectors":["team-a/nope"]}`, "nginx"),
			want: "annotation connectors.cpaas.io/proxy-inject-status names connector team-a/nope, which does not exist"},
		{name: "image of a connector the status does not name", pod: validatorPod(statusA, rewrittenA, rewrittenB),
			want: `container "c1": image ` + rewrittenB + ` points at connector team-b/private through the pull host, but the pod's annotation connectors.cpaas.io/proxy-inject-status does not name that connector`},
		{name: "pull host spelt otherwise", pod: validatorPod(statusA, "localhost:5050/namespaces/team-a/connectors/harbor/team/app:v1"),
			want: "under another name (localhost:5050)"},
		{name: "proxy path on another host", pod: validatorPod(statusA, "127.1:5050/namespaces/team-a/connectors/harbor/team/app:v1"),
			want: "under another name (127.1:5050)"},
		{name: "pull host without a connector path", pod: validatorPod(statusA, "127.0.0.1:5050/team/app:v1"),
			want: "not at a connector's path"},
		{name: "pull host image without status", pod: validatorPod("", rewrittenA),
			want: "points at the harbor-connector pull host, but the pod was not mutated by the connectors webhook"},
		{name: "loopback spelling without status", pod: validatorPod("", "[::1]:5050/team/app"),
			want: "image [::1]:5050/team/app points at the harbor-connector pull host"},
		{name: "status that is not the webhook's JSON", pod: validatorPod(`{"connectors":"team-a/harbor"}`, "nginx"),
			want: "annotation connectors.cpaas.io/proxy-inject-status is not the JSON the connectors webhook writes"},
		{name: "status entry without a namespace", pod: validatorPod(`{"connectors":["harbor"]}`, "nginx"),
			want: `names connector "harbor", which is not <namespace>/<name>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := validatePod(t, v, admissionv1.Create, "", tc.pod, nil)
			assert.Equal(t, tc.allow, resp.Allowed, message(resp))
			if !tc.allow {
				assert.Contains(t, message(resp), tc.want)
			}
			assert.Empty(t, resp.Patches, "a validating webhook never patches")
		})
	}

	t.Run("init and ephemeral containers count", func(t *testing.T) {
		p := validatorPod(statusA, rewrittenA)
		p.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: rewrittenB}}
		resp := validatePod(t, v, admissionv1.Create, "", p, nil)
		assert.False(t, resp.Allowed)
		assert.Contains(t, message(resp), `init container "setup": image `+rewrittenB)

		p = validatorPod(statusA, rewrittenA)
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "0x7f000001:5050/namespaces/team-b/connectors/private/x"}}}
		resp = validatePod(t, v, admissionv1.Create, "", p, nil)
		assert.False(t, resp.Allowed)
		assert.Contains(t, message(resp), `ephemeral container "debugger": image 0x7f000001:5050/namespaces/team-b/connectors/private/x points at the connectors pull host under another name`)
	})
}

func TestPodValidatorUpdate(t *testing.T) {
	live := validator(t, nil, nil)
	deleted := validator(t, []string{"team-a/harbor", "alpha/shared"}, nil)
	leftProject := validator(t, nil, map[string]map[string]string{"team-a": nil})
	debug := func(p *corev1.Pod, image string) *corev1.Pod {
		p = p.DeepCopy()
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: image}})
		return p
	}
	withFinalizer := validatorPod(statusA, rewrittenA)
	withFinalizer.Finalizers = []string{"batch.kubernetes.io/job-tracking"}
	finalized := withFinalizer.DeepCopy()
	finalized.Finalizers = nil

	for _, tc := range []struct {
		name        string
		v           *PodValidator
		subResource string
		old, pod    *corev1.Pod
		allow       bool
		want        string // part of the denial, or of the warning when allowed
	}{
		{name: "finalizer removed after the connector was deleted", v: deleted, old: withFinalizer, pod: finalized, allow: true},
		{name: "finalizer removed after the namespace lost sight of the connector", v: leftProject,
			old: validatorPod(statusShared, rewrittenShared), pod: func() *corev1.Pod {
				p := validatorPod(statusShared, rewrittenShared)
				p.Labels = map[string]string{"touched": "yes"}
				return p
			}(), allow: true},
		{name: "forged status stored before the webhook existed, finalizer removed", v: live,
			old: withStatus(withFinalizer, statusB), pod: withStatus(finalized, statusB), allow: true},
		{name: "status changed to another namespace's connector", v: live,
			old: validatorPod(statusA, rewrittenA), pod: validatorPod(statusB, rewrittenA),
			want: "names connector team-b/private: connector team-b/private is not visible from namespace team-a"},
		{name: "status changed to name another connector as well", v: live,
			old: validatorPod(statusA, rewrittenA), pod: validatorPod(`{"connectors":["team-a/harbor","team-b/private"]}`, rewrittenA, rewrittenB),
			want: "connector team-b/private is not visible from namespace team-a"},
		{name: "status changed after the connector was deleted", v: deleted,
			old: validatorPod(statusA, rewrittenA), pod: validatorPod(`{"connectors":["team-a/harbor"]}`, rewrittenA),
			want: "names connector team-a/harbor, which does not exist"},
		{name: "status added to an unmarked pod", v: live,
			old: validatorPod("", "nginx"), pod: validatorPod(statusB, rewrittenB), want: "not visible from namespace team-a"},
		{name: "status removed, rewritten image kept", v: live,
			old: validatorPod(statusA, rewrittenA), pod: validatorPod("", rewrittenA), want: "the pod was not mutated by the connectors webhook"},
		{name: "image changed to another namespace's connector", v: live,
			old: validatorPod(statusA, rewrittenA), pod: validatorPod(statusA, rewrittenB), want: "points at connector team-b/private through the pull host"},
		{name: "image changed to another spelling", v: live,
			old: validatorPod(statusA, rewrittenA), pod: validatorPod(statusA, "LOCALHOST:5050/namespaces/team-a/connectors/harbor/team/app:v2"), want: "under another name (LOCALHOST:5050)"},
		{name: "image changed within the connector", v: live,
			old: validatorPod(statusA, rewrittenA), pod: validatorPod(statusA, "127.0.0.1:5050/namespaces/team-a/connectors/harbor/team/app:v2"), allow: true},
		{name: "image changed within a deleted connector: a warning", v: deleted,
			old: validatorPod(statusA, rewrittenA), pod: validatorPod(statusA, "127.0.0.1:5050/namespaces/team-a/connectors/harbor/team/app:v2"), allow: true,
			want: "connector team-a/harbor, which this pod's annotation connectors.cpaas.io/proxy-inject-status names, does not exist"},
		{name: "image changed within a connector no longer visible", v: leftProject,
			old: validatorPod(statusShared, rewrittenShared), pod: validatorPod(statusShared, "127.0.0.1:5050/namespaces/alpha/connectors/shared/team/app:v2"),
			want: "connector alpha/shared is not visible from namespace team-a"},
		{name: "ephemeral container of another namespace's connector", v: live, subResource: "ephemeralcontainers",
			old: validatorPod(statusA, rewrittenA), pod: debug(validatorPod(statusA, rewrittenA), rewrittenB),
			want: `ephemeral container "debugger": image ` + rewrittenB + ` points at connector team-b/private through the pull host`},
		{name: "ephemeral container of the pod's own connector", v: live, subResource: "ephemeralcontainers",
			old: validatorPod(statusA, rewrittenA), pod: debug(validatorPod(statusA, rewrittenA), "127.0.0.1:5050/namespaces/team-a/connectors/harbor/tools/debug:v1"), allow: true},
		{name: "ephemeral container on a spelling of the pull host", v: live, subResource: "ephemeralcontainers",
			old: validatorPod(statusA, rewrittenA), pod: debug(validatorPod(statusA, rewrittenA), "2130706433:5050/namespaces/team-b/connectors/private/x"),
			want: "under another name (2130706433:5050)"},
		{name: "ordinary ephemeral container, connector no longer visible", v: leftProject, subResource: "ephemeralcontainers",
			old: validatorPod(statusShared, rewrittenShared), pod: debug(validatorPod(statusShared, rewrittenShared), "busybox"), allow: true},
		{name: "ephemeral container on an unmarked pod", v: live, subResource: "ephemeralcontainers",
			old: validatorPod("", "nginx"), pod: debug(validatorPod("", "nginx"), rewrittenA),
			want: "the pod was not mutated by the connectors webhook"},
		{name: "status changed through pods/status", v: live, subResource: "status",
			old: validatorPod(statusA, rewrittenA), pod: validatorPod(statusB, rewrittenA), want: "not visible from namespace team-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := validatePod(t, tc.v, admissionv1.Update, tc.subResource, tc.pod, tc.old)
			assert.Equal(t, tc.allow, resp.Allowed, message(resp))
			switch {
			case !tc.allow:
				assert.Contains(t, message(resp), tc.want)
			case tc.want != "":
				require.Len(t, resp.Warnings, 1)
				assert.Contains(t, resp.Warnings[0], tc.want)
			default:
				assert.Empty(t, resp.Warnings)
			}
		})
	}
}

func withStatus(p *corev1.Pod, status string) *corev1.Pod {
	p = p.DeepCopy()
	p.Annotations[policies.AnnotationStatus] = status
	return p
}

// Every Pod the mutating webhook admits passes the validator: the two agree on what a mutated
// Pod looks like (every golden Pod, as mutated).
func TestPodValidatorAdmitsEveryMutatedPod(t *testing.T) {
	in := loadInjector(t)
	v := &PodValidator{PullHost: testConfig.PullHost, Lookup: in.Lookup}
	h := &PodHandler{Injector: in}
	for _, name := range []string{"images-only", "init-and-sidecars", "multiple-connectors", "tag-and-digest", "connector-not-ready", "host-port-registry", "namespace-opt-in"} {
		t.Run(name, func(t *testing.T) {
			var pod corev1.Pod
			raw := canonical(t, "pods", readTestdata(t, "pods/"+name+".yaml"))
			resp, out := admit(t, h, admissionv1.Create, raw, nil, podNamespace(t, raw))
			require.True(t, resp.Allowed)
			require.NoError(t, json.Unmarshal(out, &pod))
			require.Contains(t, pod.Annotations, policies.AnnotationStatus)
			got := validatePod(t, v, admissionv1.Create, "", &pod, nil)
			assert.True(t, got.Allowed, message(got))
		})
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return raw
}

func podNamespace(t *testing.T, raw []byte) string {
	t.Helper()
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	require.NoError(t, json.Unmarshal(raw, &meta))
	return meta.Metadata.Namespace
}
