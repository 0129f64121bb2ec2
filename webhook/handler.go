package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/alauda/harbor-connector/policies"
)

// Skip reasons for whole objects (bounded, for metrics and logs).
const (
	skipNoAnnotation  = "no-connector-annotation"
	skipMirrorPod     = "mirror-pod"
	skipOptedOut      = "opted-out"
	skipNotMutatedYet = "update-of-unmutated-object"
	skipOperation     = "operation"
)

// skipReason is the ordered list of reasons not to touch an object (Istio's injectRequired
// style). podMeta is the Pod's metadata or the Job template's; objectMeta is the object the
// webhook sees (the Pod, or the Job); oldPodMeta is the previous pod metadata on UPDATE.
func skipReason(op admissionv1.Operation, objectMeta, podMeta, oldPodMeta *metav1.ObjectMeta) string {
	switch {
	case op != admissionv1.Create && op != admissionv1.Update:
		return skipOperation
	case podMeta.Annotations[policies.AnnotationConnector] == "":
		return skipNoAnnotation
	case objectMeta.Annotations[policies.AnnotationMirrorPod] != "":
		return skipMirrorPod
	case objectMeta.Labels[policies.LabelProxyInject] == "false" || podMeta.Labels[policies.LabelProxyInject] == "false":
		return skipOptedOut
	// On UPDATE only objects mutated at creation are re-mutated (so a re-applied manifest is a
	// no-op); injecting into a running pod is not possible.
	case op == admissionv1.Update && (oldPodMeta == nil || !policies.HasStatus(oldPodMeta)):
		return skipNotMutatedYet
	}
	return ""
}

// mutation runs the shared core on one pod template and turns the result into a response:
// the JSON patch from the object as decoded to the object as mutated, with warnings, or a
// denial, or an error (failurePolicy then applies). The API server serialises the request's
// object from the same Go types, so marshalling the mutated object back yields patch operations
// for real changes only, and a second pass yields an empty patch.
type mutation struct {
	injector *Injector
	kind     string
}

// respond decides one admission. cur is the object as the request holds it (mutated in place);
// old is the stored object on UPDATE (nil otherwise).
func (m *mutation) respond(ctx context.Context, req admission.Request, obj any, cur podParts, old *podParts) admission.Response {
	podMeta := cur.pod
	logger := log.FromContext(ctx).WithValues("kind", m.kind, "namespace", req.Namespace, "name", objectName(cur.object), "operation", req.Operation, "uid", req.UID, "dryRun", req.DryRun != nil && *req.DryRun)
	var oldPodMeta *metav1.ObjectMeta
	if old != nil {
		oldPodMeta = old.pod
	}
	if reason := skipReason(req.Operation, cur.object, podMeta, oldPodMeta); reason != "" {
		m.count(req, resultSkipped)
		skips.WithLabelValues(reason).Inc()
		logger.V(1).Info("skipped", "reason", reason)
		return admission.Allowed(reason)
	}
	// What the update changes, read before Inject rewrites the object in place.
	var changed []string
	var stored *corev1.PodSpec
	if req.Operation == admissionv1.Update && old != nil {
		changed = changedFacts(cur, *old)
		stored = old.spec
	}
	outcome, err := m.injector.Inject(ctx, req.Namespace, podMeta, cur.spec, stored)
	for reason, n := range outcome.Skipped {
		skips.WithLabelValues(reason).Add(float64(n))
	}
	if err != nil {
		switch {
		case IsDenial(err) && req.Operation == admissionv1.Update && len(changed) == 0:
			// An object mutated at creation is only re-mutated on UPDATE so a re-applied manifest
			// stays a no-op; that must never block its lifecycle. When its connector was deleted
			// or is no longer visible, a denial here would refuse every later update, including
			// the Job controller removing its tracking finalizer, leaving pods stuck Terminating.
			// Such an update changes none of what the refusal is about (the connector, inject and
			// status annotations, the images), so admitting it unchanged gives nothing away: the
			// proxy still refuses the connector. An update that changes any of them is denied
			// below, like a creation: otherwise a denial would turn into "admitted unchanged" for
			// exactly the change it refuses.
			m.count(req, resultUnchanged)
			logger.Info("re-mutation refused; admitted unchanged", "connectors", podMeta.Annotations[policies.AnnotationConnector], "reason", err.Error())
			resp := admission.Allowed("")
			resp.Warnings = []string{"admitted unchanged: " + err.Error()}
			return resp
		case IsDenial(err) && req.Operation == admissionv1.Update:
			m.count(req, resultDenied)
			logger.Info("denied", "connectors", podMeta.Annotations[policies.AnnotationConnector], "changed", changed, "reason", err.Error())
			return admission.Denied(err.Error() + " (this update changes " + strings.Join(changed, ", ") +
				"; an update of an object the webhook mutated is admitted unchanged only when it changes none of the connector, inject and status annotations and images)")
		case IsDenial(err):
			m.count(req, resultDenied)
			logger.Info("denied", "connectors", podMeta.Annotations[policies.AnnotationConnector], "reason", err.Error())
			return admission.Denied(err.Error())
		default:
			logger.Error(err, "admission failed")
			return m.errored(req, err)
		}
	}
	after, err := json.Marshal(obj)
	if err != nil {
		return m.errored(req, err)
	}
	resp := admission.PatchResponseFromRaw(req.Object.Raw, after)
	resp.Warnings = outcome.Warnings
	result := resultMutated
	if len(resp.Patches) == 0 {
		result = resultUnchanged
	}
	m.count(req, result)
	imageRewrites.WithLabelValues(m.kind).Add(float64(outcome.Rewritten))
	logger.Info(result, "connectors", podMeta.Annotations[policies.AnnotationConnector], "rewrittenImages", outcome.Rewritten, "warnings", len(outcome.Warnings))
	return resp
}

func (m *mutation) count(req admission.Request, result string) {
	admissions.WithLabelValues(m.kind, string(req.Operation), result).Inc()
}

func (m *mutation) errored(req admission.Request, err error) admission.Response {
	m.count(req, resultErrored)
	return admission.Errored(http.StatusInternalServerError, err)
}

// objectName is the name, or for objects named by the API server, the generateName prefix.
func objectName(meta *metav1.ObjectMeta) string {
	if meta.Name != "" {
		return meta.Name
	}
	return meta.GenerateName + "*"
}

// decode reads the request's object and, on UPDATE, the previous one (nil otherwise).
func decode[T any](req admission.Request) (obj, old *T, err error) {
	obj = new(T)
	if err := json.Unmarshal(req.Object.Raw, obj); err != nil {
		return nil, nil, err
	}
	if len(req.OldObject.Raw) > 0 {
		old = new(T)
		if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
			return nil, nil, err
		}
	}
	return obj, old, nil
}
