// Package access is the one seam through which every part reaches a connector: Resolve looks a
// connector up for a namespace and applies the visibility rule (policies.CanUseConnector), and
// LoadCredentials reads the Secrets a Connector references. The webhook, the proxy (reverse,
// forward and node pulls), the CSI driver and the controller call these, so a missing
// namespace, a foreign Secret or an invisible connector gets the same answer everywhere.
// Unlike policies it reads the API server, always through a Source or a client.Reader its
// caller hands it.
package access

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// Source reads what access decisions need. Connector and Namespace return an error for which
// apierrors.IsNotFound holds when the object does not exist.
type Source interface {
	Connector(ctx context.Context, ref policies.ConnectorRef) (*v1alpha1.Connector, error)
	Namespace(ctx context.Context, name string) (policies.Namespace, error)
}

// NotVisibleError: the connector's namespace does not share it with the caller's namespace. It
// says nothing about whether the connector exists, so a namespace cannot probe another's.
type NotVisibleError struct {
	Ref  policies.ConnectorRef
	From string
	rule error
}

func (e *NotVisibleError) Error() string { return e.rule.Error() }

// NotFoundError: the connector is visible from the caller's namespace but does not exist.
type NotFoundError struct{ Ref policies.ConnectorRef }

func (e *NotFoundError) Error() string { return fmt.Sprintf("connector %s does not exist", e.Ref) }

// IsNotVisible reports whether err is a *NotVisibleError.
func IsNotVisible(err error) bool {
	var e *NotVisibleError
	return errors.As(err, &e)
}

// IsNotFound reports whether err is a *NotFoundError.
func IsNotFound(err error) bool {
	var e *NotFoundError
	return errors.As(err, &e)
}

// Resolver applies the visibility rule to connectors read from a Source.
type Resolver struct{ Source Source }

// Resolve returns the connector ref names for a workload in namespace from: visibility first
// (*NotVisibleError), then existence (*NotFoundError); any other error is the API server's.
func (r *Resolver) Resolve(ctx context.Context, from string, ref policies.ConnectorRef) (*v1alpha1.Connector, error) {
	if err := r.CheckVisible(ctx, from, ref); err != nil {
		return nil, err
	}
	c, err := r.Source.Connector(ctx, ref)
	switch {
	case apierrors.IsNotFound(err):
		return nil, &NotFoundError{Ref: ref}
	case err != nil:
		return nil, fmt.Errorf("reading connector %s: %w", ref, err)
	}
	return c, nil
}

// CheckVisible applies only the visibility rule (*NotVisibleError when it refuses). A namespace
// that does not exist has no labels: it shares nothing and is shared with nothing, unless the
// connector lives in kube-public.
func (r *Resolver) CheckVisible(ctx context.Context, from string, ref policies.ConnectorRef) error {
	caller, err := r.namespace(ctx, from)
	if err != nil {
		return err
	}
	owner := caller
	if ref.Namespace != from {
		if owner, err = r.namespace(ctx, ref.Namespace); err != nil {
			return err
		}
	}
	if err := policies.CanUseConnector(caller, owner, ref.Name); err != nil {
		return &NotVisibleError{Ref: ref, From: from, rule: err}
	}
	return nil
}

func (r *Resolver) namespace(ctx context.Context, name string) (policies.Namespace, error) {
	ns, err := r.Source.Namespace(ctx, name)
	switch {
	case apierrors.IsNotFound(err):
		return policies.Namespace{Name: name}, nil
	case err != nil:
		return policies.Namespace{}, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return ns, nil
}

// CachedSource reads from an informer cache and, on a miss, once from the API server:
// `kubectl apply -f dir/` often creates a Connector and the workload using it in the same second,
// before the informer has seen the Connector.
type CachedSource struct {
	Cache client.Reader
	// Live is read after a cache miss; nil never reads past the cache.
	Live client.Reader
	// OnMiss, when set, is called for every live read (a metric of the caller's).
	OnMiss func()
}

// Connector implements Source.
func (s *CachedSource) Connector(ctx context.Context, ref policies.ConnectorRef) (*v1alpha1.Connector, error) {
	var c v1alpha1.Connector
	if err := s.get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// Namespace implements Source.
func (s *CachedSource) Namespace(ctx context.Context, name string) (policies.Namespace, error) {
	var ns corev1.Namespace
	if err := s.get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
		return policies.Namespace{}, err
	}
	return policies.Namespace{Name: ns.Name, Labels: ns.Labels}, nil
}

func (s *CachedSource) get(ctx context.Context, key types.NamespacedName, obj client.Object) error {
	err := s.Cache.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && s.Live != nil {
		if s.OnMiss != nil {
			s.OnMiss()
		}
		return s.Live.Get(ctx, key, obj)
	}
	return err
}
