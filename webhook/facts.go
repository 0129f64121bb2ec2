package webhook

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/alauda/harbor-connector/policies"
)

// podParts is what admission decides on for a Pod or a Job: the metadata of the object the
// webhook sees (the Pod, or the Job), the pod metadata (the Pod's, or the Job template's) and the
// pod spec.
type podParts struct {
	object, pod *metav1.ObjectMeta
	spec        *corev1.PodSpec
}

// decisionKeys are the annotations a mutation or a validation is decided on.
var decisionKeys = []string{policies.AnnotationConnector, policies.AnnotationInject, policies.AnnotationStatus}

// containerImage is one image a pod names, with where it sits, for messages.
type containerImage struct {
	where string // `container "app"`, `init container "setup"`, `ephemeral container "debugger"`
	image string
}

// podImages lists every image of a pod spec: init containers (native sidecars included),
// containers and ephemeral containers.
func podImages(spec *corev1.PodSpec) []containerImage {
	var out []containerImage
	for _, c := range spec.InitContainers {
		out = append(out, containerImage{fmt.Sprintf("init container %q", c.Name), c.Image})
	}
	for _, c := range spec.Containers {
		out = append(out, containerImage{fmt.Sprintf("container %q", c.Name), c.Image})
	}
	for _, c := range spec.EphemeralContainers {
		out = append(out, containerImage{fmt.Sprintf("ephemeral container %q", c.Name), c.Image})
	}
	return out
}

// changedImages returns the images of cur that old does not name at the same place (a container
// of that name with that image): the images an update changes or adds.
func changedImages(cur, old *corev1.PodSpec) []containerImage {
	before := map[string]string{}
	for _, ci := range podImages(old) {
		before[ci.where] = ci.image
	}
	var out []containerImage
	for _, ci := range podImages(cur) {
		if img, ok := before[ci.where]; !ok || img != ci.image {
			out = append(out, ci)
		}
	}
	return out
}

// annotationChanged compares one annotation, presence included.
func annotationChanged(cur, old *metav1.ObjectMeta, key string) bool {
	a, aok := cur.Annotations[key]
	b, bok := old.Annotations[key]
	return a != b || aok != bok
}

// changedFacts names what an update changes of what admission decides on: the connector, inject
// and status annotations (on the object and on the pod metadata) and every image. Removed
// containers count too (a Pod cannot remove any; a Job template is immutable).
func changedFacts(cur, old podParts) []string {
	var out []string
	for _, key := range decisionKeys {
		if annotationChanged(cur.object, old.object, key) || annotationChanged(cur.pod, old.pod, key) {
			out = append(out, "annotation "+key)
		}
	}
	for _, ci := range changedImages(cur.spec, old.spec) {
		out = append(out, "the image of "+ci.where)
	}
	for _, ci := range changedImages(old.spec, cur.spec) {
		if !containsWhere(cur.spec, ci.where) {
			out = append(out, "removes "+ci.where)
		}
	}
	return out
}

func containsWhere(spec *corev1.PodSpec, where string) bool {
	for _, ci := range podImages(spec) {
		if ci.where == where {
			return true
		}
	}
	return false
}
