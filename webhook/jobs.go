package webhook

import (
	"context"
	"net/http"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/alauda/harbor-connector/policies"
)

// JobHandler mutates a Job's pod template, so a bad connector reference is refused when the Job
// is applied (by the user or CI, not the job controller) and the Job shows the effective images.
type JobHandler struct {
	Injector *Injector
}

// Handle implements admission.Handler.
func (h *JobHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	job, old, err := decode[batchv1.Job](req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	// The annotation may sit on the Job or on its template: copy the Job's into the template
	// (so its pods carry it and the Pod webhook finds them already mutated), then decide on
	// and mutate the template. The stored Job gets the same copy, so an update compares like
	// with like.
	copyOptIn(&job.ObjectMeta, &job.Spec.Template.ObjectMeta)
	var oldParts *podParts
	if old != nil {
		copyOptIn(&old.ObjectMeta, &old.Spec.Template.ObjectMeta)
		oldParts = &podParts{object: &old.ObjectMeta, pod: &old.Spec.Template.ObjectMeta, spec: &old.Spec.Template.Spec}
	}
	m := mutation{injector: h.Injector, kind: "Job"}
	return m.respond(ctx, req, job, podParts{object: &job.ObjectMeta, pod: &job.Spec.Template.ObjectMeta, spec: &job.Spec.Template.Spec}, oldParts)
}

// copyOptIn copies the connector annotation, the inject annotation and the opt-in label from
// the Job's metadata into the template's, where the template does not set them itself.
func copyOptIn(job, template *metav1.ObjectMeta) {
	for _, key := range []string{policies.AnnotationConnector, policies.AnnotationInject} {
		if v, ok := job.Annotations[key]; ok {
			if _, set := template.Annotations[key]; !set {
				if template.Annotations == nil {
					template.Annotations = map[string]string{}
				}
				template.Annotations[key] = v
			}
		}
	}
	if v, ok := job.Labels[policies.LabelProxyInject]; ok {
		if _, set := template.Labels[policies.LabelProxyInject]; !set {
			if template.Labels == nil {
				template.Labels = map[string]string{}
			}
			template.Labels[policies.LabelProxyInject] = v
		}
	}
}
