package webhook

import (
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/alauda/harbor-connector/policies/access"
)

// FuzzPodMutation admits pods built from random images, container layouts, env and volumes:
// the handler must never panic, and whatever it admits must come back unchanged on a second
// pass. Run longer with: go test ./webhook -run '^$' -fuzz FuzzPodMutation -fuzztime 60s
func FuzzPodMutation(f *testing.F) {
	f.Add("harbor.example.com/team/app:v1", "registry.local:5000/x", "harbor", "HTTPS_PROXY", "http://corp:8080", uint8(0))
	f.Add("nginx", "harbor.example.com:443/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "harbor,registry", "NO_PROXY", "a,,b", uint8(7))
	f.Add("127.0.0.1:5050/namespaces/team-a/connectors/harbor/t/a", "", "harbor", "SSL_CERT_DIR", "", uint8(3))
	f.Add("HARBOR.EXAMPLE.COM/Team/App", " ", "kube-public/public", "x", "y", uint8(255))
	in := &Injector{Config: testConfig, Lookup: nil}
	f.Fuzz(func(t *testing.T, image1, image2, annotation, envName, envValue string, layout uint8) {
		if in.Lookup == nil {
			in.Lookup = fuzzLookup(t)
		}
		pod := corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team-a", Annotations: map[string]string{"connectors.cpaas.io/connector": annotation}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: image1}}},
		}
		if layout&1 != 0 {
			pod.Spec.InitContainers = []corev1.Container{{Name: "init", Image: image2}}
		}
		if layout&2 != 0 {
			always := corev1.ContainerRestartPolicyAlways
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: "sidecar", Image: image1, RestartPolicy: &always})
		}
		if layout&4 != 0 && envName != "" {
			pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: envName, Value: envValue}}
		}
		if layout&8 != 0 {
			pod.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
		}
		if layout&16 != 0 {
			pod.Spec.Volumes = []corev1.Volume{{Name: "connectors-proxy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}
		if layout&32 != 0 {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "b", Image: image2})
		}
		if layout&64 != 0 {
			pod.Annotations["connectors.cpaas.io/inject"] = envValue
		}
		raw, err := json.Marshal(&pod)
		if err != nil {
			t.Skip()
		}
		h := &PodHandler{Injector: in}
		resp, out := admit(t, h, admissionv1.Create, raw, nil, "team-a")
		if !resp.Allowed {
			return
		}
		again, _ := admit(t, h, admissionv1.Create, out, nil, "team-a")
		if !again.Allowed || len(again.Patches) != 0 {
			t.Fatalf("second pass changed the pod: allowed=%v patches=%v\nfirst output: %s", again.Allowed, again.Patches, out)
		}
	})
}

func fuzzLookup(t *testing.T) access.Source {
	return loadInjector(t).Lookup
}
