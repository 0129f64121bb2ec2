package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
)

// mirrorSecretIndex is secretNameIndex for the mirror controller (an index name is registered
// once per manager, and the two controllers are set up independently).
const mirrorSecretIndex = "connectors.alauda.io/mirror-secret-names"

// mirrorAction is the action of the mirror's Events (events.k8s.io/v1 requires one).
const mirrorAction = "CopyCredentials"

// ReasonCredentialsNotCopied is the Warning Event on a Connector whose copy could not be written.
const ReasonCredentialsNotCopied = "CredentialsNotCopied"

// CredentialsMirror keeps, for every Connector, a copy of its credentials in Namespace (the
// credentials namespace, which holds only the copies): the proxy reads those copies and no other
// Secret. A copy follows its
// Connector's spec and Secrets (every change of either, seen through the Connector watch and the
// Secret metadata watch), records a missing or malformed Secret as a problem without data, is
// recreated when deleted by hand, and is deleted with its Connector. A copy whose Connector is
// gone while the manager was down is deleted when the manager starts (the copies are watched
// too, and each maps to its Connector). Copies are not owned (a Connector in another namespace
// cannot own them) and no finalizer is needed: the copy's name follows from the Connector's.
type CredentialsMirror struct {
	// Client reads Connectors from the cache and writes the copies.
	Client client.Client
	// Live reads the Connectors' Secrets and the copies from the API server, so no Secret data
	// sits in an informer cache.
	Live client.Reader
	// Recorder writes events.k8s.io/v1 Events, as the Connector controller does (its RBAC).
	Recorder events.EventRecorder
	// Namespace is where the copies live (--credentials-namespace).
	Namespace string
}

// NewCredentialsMirror builds the mirror for a manager.
func NewCredentialsMirror(mgr ctrl.Manager, namespace string) *CredentialsMirror {
	return &CredentialsMirror{Client: mgr.GetClient(), Live: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("connector-credentials"), Namespace: namespace}
}

// SetupWithManager registers the controller: Connectors by generation, Secrets by metadata
// (the Connectors' own, and the copies).
func (m *CredentialsMirror) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if m.Namespace == "" {
		return fmt.Errorf("the credentials mirror needs a namespace")
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Connector{}, mirrorSecretIndex, referencedSecrets); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("connector-credentials").
		For(&v1alpha1.Connector{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(m.connectorsForSecret)).
		Complete(m)
}

// The manager reads Secrets everywhere (ConnectorReconciler's marker) and writes them only in
// the credentials namespace (access.DefaultCredentialsNamespace), which holds nothing but the
// copies: a Role there, no cluster-wide write, and none in connectors-system, where the product's
// keys are.
// +kubebuilder:rbac:groups="",namespace=connectors-credentials,resources=secrets,verbs=create;update;delete

func (m *CredentialsMirror) connectorsForSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	if secret.GetNamespace() == m.Namespace {
		if ref, ok := access.MirrorOwner(secret); ok {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}})
		}
	}
	var list v1alpha1.ConnectorList
	if err := m.Client.List(ctx, &list, client.InNamespace(secret.GetNamespace()),
		client.MatchingFields{mirrorSecretIndex: secret.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing Connectors that reference a Secret", "secret", client.ObjectKeyFromObject(secret))
		return reqs
	}
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}})
	}
	return reqs
}

// Reconcile makes one Connector's copy match its spec and Secrets, or deletes it when the
// Connector is gone.
func (m *CredentialsMirror) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ref := policies.ConnectorRef{Namespace: req.Namespace, Name: req.Name}
	key := access.MirrorKey(m.Namespace, ref)
	var c v1alpha1.Connector
	if err := m.Client.Get(ctx, req.NamespacedName, &c); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, m.deleteCopy(ctx, key, ref)
	}
	if !c.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, m.deleteCopy(ctx, key, ref)
	}
	want, err := access.BuildMirror(ctx, m.Live, m.Namespace, &c)
	if err != nil {
		// The Secrets could not be read (the API server's answer): keep the copy as it is and
		// retry with backoff; SecretReady says what happened.
		return ctrl.Result{}, err
	}
	var have corev1.Secret
	err = m.Live.Get(ctx, key, &have)
	switch {
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, m.write(ctx, &c, want, m.Client.Create(ctx, want))
	case err != nil:
		return ctrl.Result{}, m.write(ctx, &c, want, err)
	}
	if owner, ok := access.MirrorOwner(&have); !ok || owner != ref {
		// Another Connector's copy (or a Secret that is no copy) holds the name: never overwrite
		// it. The proxy refuses it for this Connector (access.LoadMirroredCredentials).
		m.Recorder.Eventf(&c, nil, corev1.EventTypeWarning, ReasonCredentialsNotCopied, mirrorAction,
			"Secret %s exists and is not this Connector's copy of its credentials; the proxy cannot use this Connector until it is removed", key)
		log.FromContext(ctx).Error(nil, "the credentials copy's name is taken", "secret", key.String())
		return ctrl.Result{}, nil
	}
	if have.Type != want.Type || (have.Immutable != nil && *have.Immutable) {
		// Neither can be changed in place.
		if err := m.Client.Delete(ctx, &have, client.Preconditions{UID: &have.UID}); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, m.write(ctx, &c, want, err)
		}
		return ctrl.Result{}, m.write(ctx, &c, want, m.Client.Create(ctx, want))
	}
	if equality.Semantic.DeepEqual(have.Labels, want.Labels) && equality.Semantic.DeepEqual(have.Annotations, want.Annotations) &&
		sameData(have.Data, want.Data) {
		return ctrl.Result{}, nil
	}
	have.Labels, have.Annotations, have.Data, have.StringData = want.Labels, want.Annotations, want.Data, nil
	return ctrl.Result{}, m.write(ctx, &c, want, m.Client.Update(ctx, &have))
}

// write reports a failed write of the copy as a Warning Event on the Connector (the error itself
// goes back to controller-runtime, which logs it and retries with backoff).
func (m *CredentialsMirror) write(ctx context.Context, c *v1alpha1.Connector, want *corev1.Secret, err error) error {
	if err == nil {
		log.FromContext(ctx).V(1).Info("copied the connector's credentials", "secret", client.ObjectKeyFromObject(want).String(),
			"problem", want.Annotations[access.AnnotationMirrorProblemReason])
		return nil
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return err // a concurrent change: the retry reads it
	}
	m.Recorder.Eventf(c, nil, corev1.EventTypeWarning, ReasonCredentialsNotCopied, mirrorAction,
		"the manager could not write the copy of this Connector's credentials (Secret %s/%s) that the proxy reads: %v", want.Namespace, want.Name, err)
	return err
}

func (m *CredentialsMirror) deleteCopy(ctx context.Context, key types.NamespacedName, ref policies.ConnectorRef) error {
	var have corev1.Secret
	if err := m.Live.Get(ctx, key, &have); err != nil {
		return client.IgnoreNotFound(err)
	}
	if owner, ok := access.MirrorOwner(&have); !ok || owner != ref {
		return nil // not this Connector's copy
	}
	if err := m.Client.Delete(ctx, &have, client.Preconditions{UID: &have.UID}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	log.FromContext(ctx).V(1).Info("deleted the copy of a deleted connector's credentials", "secret", key.String())
	return nil
}

func sameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}
