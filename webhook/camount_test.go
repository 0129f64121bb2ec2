package webhook

import (
	"encoding/json"
	"path"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/alauda/harbor-connector/policies"
)

// caJob is a Job of two connectors (two registry hosts) with an init container.
func caJob() *batchv1.Job {
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: "team-a",
			Annotations: map[string]string{policies.AnnotationConnector: "harbor,registry"}},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy:  corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{Name: "fetch", Image: "busybox:1.36"}},
			Containers:     []corev1.Container{{Name: "build", Image: "harbor.example.com/team/app:v1"}},
		}}},
	}
}

func caMounts(spec corev1.PodSpec) map[string][]corev1.VolumeMount {
	out := map[string][]corev1.VolumeMount{}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, m := range c.VolumeMounts {
			if m.Name == policies.VolumeName && m.MountPath != policies.MountPath {
				out[c.Name] = append(out[c.Name], m)
			}
		}
	}
	return out
}

// Every container gets, for each connector host, the volume's CA directory (not its ca.crt
// file) read-only at certs.d/<host>: a subPath mount of a directory follows the CSI driver's
// CA renewals, one of a file does not (csi/subpath_test.go).
func TestCAMountIsTheDirectory(t *testing.T) {
	h := &JobHandler{Injector: loadInjector(t)}
	raw, err := json.Marshal(caJob())
	require.NoError(t, err)
	resp, out := admit(t, h, admissionv1.Create, raw, nil, "team-a")
	require.True(t, resp.Allowed, "%v", resp.Result)
	var job batchv1.Job
	require.NoError(t, json.Unmarshal(out, &job))
	want := []corev1.VolumeMount{
		{Name: policies.VolumeName, ReadOnly: true, SubPath: policies.DirContainersCA, MountPath: path.Join(policies.ContainersCertsDir, "harbor.example.com")},
		{Name: policies.VolumeName, ReadOnly: true, SubPath: policies.DirContainersCA, MountPath: path.Join(policies.ContainersCertsDir, "registry.local:5000")},
	}
	assert.Equal(t, map[string][]corev1.VolumeMount{"fetch": want, "build": want}, caMounts(job.Spec.Template.Spec))
}

// A Job an earlier version mutated mounts the CA file at certs.d/<host>/ca.crt, and its
// template cannot change: re-applying its manifest (the update drops the injected mounts, as a
// server-side apply does) gives back exactly the stored Job.
func TestReapplyKeepsAnEarlierVersionsCAFileMount(t *testing.T) {
	h := &JobHandler{Injector: loadInjector(t)}
	manifest, err := json.Marshal(caJob())
	require.NoError(t, err)
	_, out := admit(t, h, admissionv1.Create, manifest, nil, "team-a")
	var job batchv1.Job
	require.NoError(t, json.Unmarshal(out, &job))
	spec := &job.Spec.Template.Spec
	for _, c := range []*corev1.Container{&spec.InitContainers[0], &spec.Containers[0]} {
		for i, m := range c.VolumeMounts {
			if m.SubPath == policies.DirContainersCA {
				c.VolumeMounts[i].SubPath = policies.FileCACert
				c.VolumeMounts[i].MountPath = path.Join(m.MountPath, policies.FileCACert)
			}
		}
	}
	stored, err := json.Marshal(&job)
	require.NoError(t, err)
	require.Len(t, caMounts(job.Spec.Template.Spec)["build"], 2)

	var reapplied batchv1.Job
	require.NoError(t, json.Unmarshal(stored, &reapplied))
	tmpl := &reapplied.Spec.Template.Spec
	tmpl.Volumes = nil
	tmpl.InitContainers[0].VolumeMounts, tmpl.InitContainers[0].Env = nil, nil
	tmpl.Containers[0].VolumeMounts, tmpl.Containers[0].Env = nil, nil
	tmpl.Containers[0].Image = "harbor.example.com/team/app:v1"
	update, err := json.Marshal(&reapplied)
	require.NoError(t, err)
	resp, result := admit(t, h, admissionv1.Update, update, stored, "team-a")
	require.True(t, resp.Allowed, "%v", resp.Result)
	assert.JSONEq(t, string(stored), string(result), "the re-mutation gives the stored Job, its CA file mounts included")
}
