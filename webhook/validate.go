package webhook

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
)

// The validating webhook counts its answers in the admissions counter under this kind, with
// the results allowed, denied, skipped and errored.
const (
	kindValidation = "PodValidation"
	resultAllowed  = "allowed"
)

// PodValidator checks what a Pod claims about connectors, in every namespace, whether or not
// the mutating webhook saw it: the status annotation (connectors.cpaas.io/proxy-inject-status)
// is what the node pull listener trusts, and the mutating webhook only sees annotated objects
// in opted-in namespaces, so a Pod could otherwise carry a status written by hand. It serves
// Pod CREATE and UPDATE and the pods/ephemeralcontainers and pods/status subresources (the
// object is the Pod in each case); the ValidatingWebhookConfiguration's matchConditions send
// it only Pods that carry the status annotation or aim an image at the pull host.
//
// The rule:
//   - every connector the status names is usable from the Pod's namespace (the access seam);
//   - every image aimed at the pull host, in any spelling (policies.PullHostRule), is exactly
//     <pull-host>/namespaces/<ns>/connectors/<name>/<repo> for a connector the status names.
//
// On UPDATE only what the update changes is judged: an update that changes neither the status
// annotation nor an image is admitted as it is (the Job controller removing its finalizer from
// a pod whose connector was deleted since, or whose namespace lost sight of it); with the status
// unchanged, only the changed images are checked, and a connector they use that no longer
// exists is a warning (the proxy refuses it anyway), while one the namespace may not use is a
// denial.
type PodValidator struct {
	// PullHost is the manager's --pull-host.
	PullHost string
	// Lookup reads connectors and namespaces (the manager's cache, one live read on a miss).
	Lookup access.Source

	once sync.Once
	rule *policies.PullHostRule
	err  error
}

// Handle implements admission.Handler.
func (v *PodValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	logger := log.FromContext(ctx).WithValues("kind", "Pod", "namespace", req.Namespace, "name", req.Name, "operation", req.Operation, "subResource", req.SubResource, "uid", req.UID)
	count := func(result string) { admissions.WithLabelValues(kindValidation, string(req.Operation), result).Inc() }
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		count(resultSkipped)
		return admission.Allowed(skipOperation)
	}
	v.once.Do(func() { v.rule, v.err = policies.NewPullHostRule(v.PullHost) })
	if v.err != nil {
		count(resultErrored)
		return admission.Errored(http.StatusInternalServerError, v.err)
	}
	pod, old, err := decode[corev1.Pod](req)
	if err != nil {
		count(resultErrored)
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Operation != admissionv1.Update {
		old = nil
	}
	warnings, err := v.validate(ctx, req.Namespace, pod, old)
	switch {
	case IsDenial(err):
		count(resultDenied)
		logger.Info("denied", "reason", err.Error())
		return admission.Denied(err.Error())
	case err != nil:
		count(resultErrored)
		logger.Error(err, "validation failed")
		return admission.Errored(http.StatusInternalServerError, err)
	}
	count(resultAllowed)
	resp := admission.Allowed("")
	resp.Warnings = warnings
	return resp
}

// validate returns warnings, a denial (IsDenial) or an internal error. old is the stored Pod
// on UPDATE, nil on CREATE.
func (v *PodValidator) validate(ctx context.Context, namespace string, pod, old *corev1.Pod) ([]string, error) {
	statusChanged := old == nil || annotationChanged(&pod.ObjectMeta, &old.ObjectMeta, policies.AnnotationStatus)
	images := podImages(&pod.Spec)
	if !statusChanged {
		images = changedImages(&pod.Spec, &old.Spec)
		if len(images) == 0 {
			return nil, nil // nothing this webhook decides on changed
		}
	}
	raw, hasStatus := pod.Annotations[policies.AnnotationStatus]
	var named []policies.ConnectorRef
	if hasStatus {
		_, refs, err := policies.ParseStatus(raw)
		if err != nil {
			if !statusChanged {
				// Stored before this webhook existed: judge the changed images as if no
				// connector were named.
				refs = nil
			} else {
				return nil, deny("%v: the webhook writes that annotation; remove it and name the connector in annotation %s", err, policies.AnnotationConnector)
			}
		}
		named = refs
	}

	resolver := access.Resolver{Source: v.Lookup}
	var warnings []string
	check := func(ref policies.ConnectorRef, lenientNotFound bool) error {
		_, err := resolver.Resolve(ctx, namespace, ref)
		switch {
		case access.IsNotVisible(err):
			return deny("annotation %s names connector %s: %v; the webhook writes that annotation: remove it and name a connector this namespace may use in annotation %s",
				policies.AnnotationStatus, ref, err, policies.AnnotationConnector)
		case access.IsNotFound(err) && lenientNotFound:
			warnings = append(warnings, fmt.Sprintf("connector %s, which this pod's annotation %s names, does not exist: pulls through it fail until it is created again", ref, policies.AnnotationStatus))
			return nil
		case access.IsNotFound(err):
			return deny("annotation %s names connector %s, which does not exist: the webhook writes that annotation; remove it and name an existing connector in annotation %s",
				policies.AnnotationStatus, ref, policies.AnnotationConnector)
		case err != nil:
			return err
		}
		return nil
	}
	if statusChanged {
		for _, ref := range named {
			if err := check(ref, false); err != nil {
				return nil, err
			}
		}
	}

	checked := map[policies.ConnectorRef]bool{}
	for _, ci := range images {
		ref, aimed, err := v.rule.CheckImage(ci.image, named, hasStatus)
		if err != nil {
			return nil, deny("%s: %v", ci.where, err)
		}
		if aimed && !statusChanged && !checked[ref] {
			// The status was checked when it was written; a changed image using one of its
			// connectors is checked now.
			checked[ref] = true
			if err := check(ref, true); err != nil {
				return nil, err
			}
		}
	}
	return warnings, nil
}
