// Package controller reconciles Connectors: it checks the Secrets they reference, probes the
// registry, and reports what it found as conditions and events a person can act on.
package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
)

// secretNameIndex indexes Connectors by the names of the Secrets they reference (auth and CA),
// so a Secret change re-probes exactly the Connectors that use it.
const secretNameIndex = "connectors.alauda.io/secret-names"

// ConnectorReconciler fills Connector status from the referenced Secrets, registry probes and
// the proxy's readiness.
type ConnectorReconciler struct {
	// Client reads Connectors from the cache and writes their status.
	Client client.Client
	// SecretReader reads Secrets live: Secrets are watched by metadata only, so no Secret data
	// sits in the manager's cache.
	SecretReader client.Reader
	// Recorder writes events.k8s.io/v1 Events (the manager's GetEventRecorder).
	Recorder events.EventRecorder
	Prober   *Prober
	Proxy    *ProxyChecker

	// ProbeInterval is how often a healthy Connector is re-probed.
	ProbeInterval time.Duration
	// RetryInterval is how soon a failing Connector is re-probed.
	RetryInterval time.Duration
}

// SetupWithManager registers the controller: Connectors by generation, Secrets by metadata.
func (r *ConnectorReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Connector{}, secretNameIndex, referencedSecrets); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("connector").
		For(&v1alpha1.Connector{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.connectorsForSecret)).
		Complete(r)
}

func referencedSecrets(obj client.Object) []string {
	c := obj.(*v1alpha1.Connector)
	var names []string
	if c.Spec.Auth != nil && c.Spec.Auth.SecretRef != nil {
		names = append(names, c.Spec.Auth.SecretRef.Name)
	}
	if c.Spec.CACertSecretRef != nil {
		names = append(names, c.Spec.CACertSecretRef.Name)
	}
	return names
}

func (r *ConnectorReconciler) connectorsForSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	var list v1alpha1.ConnectorList
	if err := r.Client.List(ctx, &list, client.InNamespace(secret.GetNamespace()),
		client.MatchingFields{secretNameIndex: secret.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing Connectors that reference a Secret", "secret", client.ObjectKeyFromObject(secret))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{
			Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}})
	}
	return reqs
}

// +kubebuilder:rbac:groups=connectors.alauda.io,resources=connectors,verbs=get;list;watch
// +kubebuilder:rbac:groups=connectors.alauda.io,resources=connectors/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile checks one Connector and writes its status.
func (r *ConnectorReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var c v1alpha1.Connector
	if err := r.Client.Get(ctx, req.NamespacedName, &c); err != nil {
		if apierrors.IsNotFound(err) {
			connectorReady.set(req.NamespacedName, nil)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := c.DeepCopy()

	conditions := r.check(ctx, &c)
	for _, cond := range conditions {
		cond.ObservedGeneration = c.Generation
		meta.SetStatusCondition(&c.Status.Conditions, cond)
	}
	c.Status.ObservedGeneration = c.Generation
	if url := r.Proxy.ConnectorURL(&c); url != "" {
		c.Status.Proxy = &v1alpha1.ProxyStatus{HTTPAddress: &v1alpha1.HTTPAddress{URL: url}}
	} else {
		c.Status.Proxy = nil
	}

	r.recordTransitions(before, &c)
	if !equality.Semantic.DeepEqual(before.Status, c.Status) {
		if err := r.Client.Status().Patch(ctx, &c, client.MergeFrom(before)); err != nil {
			if apierrors.IsNotFound(err) {
				connectorReady.set(req.NamespacedName, nil)
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, err
		}
	}

	ready := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ConditionReady)
	connectorReady.set(req.NamespacedName, ready)
	log.FromContext(ctx).V(1).Info("probed connector", "ready", ready.Status, "reason", ready.Reason)
	if ready.Status == metav1.ConditionTrue {
		return ctrl.Result{RequeueAfter: r.ProbeInterval}, nil
	}
	return ctrl.Result{RequeueAfter: r.RetryInterval}, nil
}

// check computes the five conditions. Later checks that depend on an earlier failing one say
// NotProbed rather than guessing.
func (r *ConnectorReconciler) check(ctx context.Context, c *v1alpha1.Connector) []metav1.Condition {
	secrets := readSecrets(ctx, r.SecretReader, c)

	var liveness, auth ProbeResult
	switch {
	case secrets.CAFailed:
		// Without the CA the registry's certificate cannot be verified, so nothing is probed.
		liveness, auth = notProbed(v1alpha1.ConditionSecretReady), notProbed(v1alpha1.ConditionSecretReady)
	case !secrets.OK:
		liveness, _ = r.Prober.Probe(ctx, c, nil, secrets.RootCAs)
		auth = notProbed(v1alpha1.ConditionSecretReady)
	default:
		started := time.Now()
		liveness, auth = r.Prober.Probe(ctx, c, secrets.Basic, secrets.RootCAs)
		probeDuration.WithLabelValues(string(c.Spec.ConnectorClassName)).Observe(time.Since(started).Seconds())
	}
	proxy := r.Proxy.CheckConnector(ctx, c)

	conds := []metav1.Condition{
		condition(v1alpha1.ConditionSecretReady, secrets.ProbeResult),
		condition(v1alpha1.ConditionLivenessReady, liveness),
		condition(v1alpha1.ConditionAuthReady, auth),
		condition(v1alpha1.ConditionProxyReady, proxy),
	}
	for _, cond := range conds {
		probeResults.WithLabelValues(string(c.Spec.ConnectorClassName), cond.Type, cond.Reason).Inc()
	}
	return append(conds, summarize(conds))
}

func condition(t string, r ProbeResult) metav1.Condition {
	status := metav1.ConditionFalse
	if r.OK {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: status, Reason: r.Reason, Message: r.Message}
}

// summarize makes Ready: True when every condition is, otherwise the first failing condition's
// reason and message, so `kubectl get connectors` shows what to fix.
func summarize(conds []metav1.Condition) metav1.Condition {
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue {
			return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse,
				Reason: c.Reason, Message: c.Type + ": " + c.Message}
		}
	}
	return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonReady, Message: "the registry is reachable, the credentials work and the proxy is ready"}
}

// eventAction is the action of every Event the controller writes (events.k8s.io/v1 requires one).
const eventAction = "Probe"

// recordTransitions emits one Event per condition whose status or reason changed: Warning for
// a failure, Normal for a recovery. Unchanged conditions emit nothing, so periodic probes do not
// flood the event stream.
func (r *ConnectorReconciler) recordTransitions(before, after *v1alpha1.Connector) {
	for _, cond := range after.Status.Conditions {
		if cond.Type == v1alpha1.ConditionReady || cond.Reason == v1alpha1.ReasonNotProbed {
			continue
		}
		old := meta.FindStatusCondition(before.Status.Conditions, cond.Type)
		if old != nil && old.Status == cond.Status && old.Reason == cond.Reason {
			continue
		}
		if cond.Status == metav1.ConditionTrue {
			if old != nil && old.Status != metav1.ConditionTrue {
				r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, cond.Reason, eventAction, "%s: %s", cond.Type, cond.Message)
			}
			continue
		}
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, cond.Reason, eventAction, "%s: %s", cond.Type, cond.Message)
	}
	oldReady := meta.FindStatusCondition(before.Status.Conditions, v1alpha1.ConditionReady)
	newReady := meta.FindStatusCondition(after.Status.Conditions, v1alpha1.ConditionReady)
	if newReady.Status == metav1.ConditionTrue && (oldReady == nil || oldReady.Status != metav1.ConditionTrue) {
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, v1alpha1.ReasonReady, eventAction, "%s", newReady.Message)
	}
}
