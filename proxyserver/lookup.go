package proxyserver

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
)

// CachedNamespaces reads namespaces' labels from the informer cache.
type CachedNamespaces struct{ Reader client.Reader }

// Namespace implements NamespaceLookup.
func (c CachedNamespaces) Namespace(ctx context.Context, name string) (policies.Namespace, error) {
	var ns corev1.Namespace
	if err := c.Reader.Get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
		return policies.Namespace{}, err
	}
	return policies.Namespace{Name: ns.Name, Labels: ns.Labels}, nil
}
