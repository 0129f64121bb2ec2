package webhook

import (
	"context"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// PodHandler mutates Pods: the safety net for every controller (Deployments, Tekton, ...). A Pod
// created from a mutated Job template is already in the desired state and gets an empty patch.
type PodHandler struct {
	Injector *Injector
}

// Handle implements admission.Handler.
func (h *PodHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	pod, old, err := decode[corev1.Pod](req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	var oldParts *podParts
	if old != nil {
		oldParts = &podParts{object: &old.ObjectMeta, pod: &old.ObjectMeta, spec: &old.Spec}
	}
	m := mutation{injector: h.Injector, kind: "Pod"}
	return m.respond(ctx, req, pod, podParts{object: &pod.ObjectMeta, pod: &pod.ObjectMeta, spec: &pod.Spec}, oldParts)
}
