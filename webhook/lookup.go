package webhook

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// Lookup finds connectors and namespaces for admission decisions.
type Lookup interface {
	// Connector returns the named Connector, or an error for which apierrors.IsNotFound holds.
	Connector(ctx context.Context, ref policies.ConnectorRef) (*v1alpha1.Connector, error)
	// Namespace returns a namespace's name and labels (visibility rules read labels).
	Namespace(ctx context.Context, name string) (policies.Namespace, error)
}

// CachedLookup reads from the manager's informer cache and, on a miss, once from the API
// server: `kubectl apply -f dir/` often creates a Connector and the Job using it in the same
// second, before the informer has seen the Connector (research webhook-anchors §4.7).
type CachedLookup struct {
	Cache client.Reader
	Live  client.Reader
}

// Connector implements Lookup.
func (l *CachedLookup) Connector(ctx context.Context, ref policies.ConnectorRef) (*v1alpha1.Connector, error) {
	var c v1alpha1.Connector
	return &c, l.get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &c)
}

// Namespace implements Lookup.
func (l *CachedLookup) Namespace(ctx context.Context, name string) (policies.Namespace, error) {
	var ns corev1.Namespace
	if err := l.get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
		return policies.Namespace{}, err
	}
	return policies.Namespace{Name: ns.Name, Labels: ns.Labels}, nil
}

func (l *CachedLookup) get(ctx context.Context, key types.NamespacedName, obj client.Object) error {
	err := l.Cache.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && l.Live != nil {
		lookupMisses.Inc()
		return l.Live.Get(ctx, key, obj)
	}
	return err
}
