// Package webhook is the admission plumbing for Pods and Jobs: decode the request, apply the
// skip rules, resolve the annotated connectors, let policies.Inject decide, and answer with a
// JSON patch, warnings or a denial. It holds no rule of its own about what to inject.
package webhook

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
)

// Injector is the core both handlers share.
type Injector struct {
	Config policies.InjectionConfig
	// Lookup reads connectors and namespaces (the manager's cache, one live read on a miss).
	Lookup access.Source
}

// errDenied marks errors that deny admission (bad input), as opposed to internal errors.
type errDenied struct{ msg string }

func (e errDenied) Error() string { return e.msg }

func deny(format string, args ...any) error { return errDenied{fmt.Sprintf(format, args...)} }

// IsDenial reports whether err is a denial (a message for the user) rather than an internal error.
func IsDenial(err error) bool {
	var d errDenied
	return errors.As(err, &d)
}

// Inject mutates a pod's metadata and spec in place for the connectors its annotation names.
// namespace is the AdmissionRequest's (a controller-created Pod's own namespace field may be
// empty); stored is the stored object's pod spec on UPDATE, nil on CREATE.
func (in *Injector) Inject(ctx context.Context, namespace string, podMeta *metav1.ObjectMeta, spec, stored *corev1.PodSpec) (policies.Outcome, error) {
	refs, err := policies.ParseConnectorAnnotation(podMeta.Annotations[policies.AnnotationConnector], namespace)
	if err != nil {
		return policies.Outcome{}, deny("%v", err)
	}
	injectValue, injectPresent := podMeta.Annotations[policies.AnnotationInject]
	parts, err := policies.ParseInjectAnnotation(injectValue, injectPresent)
	if err != nil {
		return policies.Outcome{}, deny("%v", err)
	}
	connectors, err := in.resolve(ctx, namespace, refs)
	if err != nil {
		return policies.Outcome{}, err
	}
	outcome, err := policies.Inject(in.Config, policies.Workload{Namespace: namespace, Meta: podMeta, Spec: spec, Stored: stored}, connectors, parts)
	if err != nil {
		return outcome, deny("%v", err)
	}
	return outcome, nil
}

// resolve looks up each connector through the access seam, which applies the visibility rule.
func (in *Injector) resolve(ctx context.Context, namespace string, refs []policies.ConnectorRef) ([]policies.ResolvedConnector, error) {
	resolver := access.Resolver{Source: in.Lookup}
	out := make([]policies.ResolvedConnector, 0, len(refs))
	for _, ref := range refs {
		c, err := resolver.Resolve(ctx, namespace, ref)
		switch {
		case access.IsNotVisible(err):
			return nil, deny("annotation %s: %v", policies.AnnotationConnector, err)
		case access.IsNotFound(err):
			return nil, deny("annotation %s names connector %s, which does not exist: create the Connector or fix the annotation",
				policies.AnnotationConnector, ref)
		case err != nil:
			return nil, err
		}
		out = append(out, policies.ResolvedConnector{Ref: ref, Address: c.Spec.Address, NotReady: notReady(c)})
	}
	return out, nil
}

func notReady(c *v1alpha1.Connector) string {
	ready := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case ready == nil:
		return "not yet checked by the controller"
	case ready.Status != metav1.ConditionTrue:
		return ready.Reason + ": " + ready.Message
	}
	return ""
}
