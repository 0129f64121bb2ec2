package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// ErrConnectorNotFound: no such Connector (deleted, or never created).
var ErrConnectorNotFound = errors.New("connector not found")

// Store keeps one Registry per connector, built from the Connector (informer cache) and its
// Secrets (read live, so Secret data never sits in an informer cache). A Registry is rebuilt
// when its Connector changes, and dropped when a Secret it uses changes (InvalidateSecret), so
// rotated credentials and CAs take effect without a restart and old tokens are forgotten.
type Store struct {
	Connectors client.Reader
	Secrets    client.Reader
	// Dial overrides how registries are dialled (tests map names to loopback).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxTokenFetches bounds concurrent token fetches per connector.
	MaxTokenFetches int

	mu      sync.Mutex
	entries map[policies.ConnectorRef]*storeEntry
	group   singleflight.Group
}

type storeEntry struct {
	registry        *Registry
	resourceVersion string
	secrets         []types.NamespacedName
}

// Get returns the connector's Registry and the Connector itself.
func (s *Store) Get(ctx context.Context, ref policies.ConnectorRef) (*Registry, *v1alpha1.Connector, error) {
	var c v1alpha1.Connector
	if err := s.Connectors.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &c); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, ErrConnectorNotFound
		}
		return nil, nil, err
	}
	if reg := s.current(ref, c.ResourceVersion); reg != nil {
		return reg, &c, nil
	}
	// One build per connector version, however many requests arrive at once: every Registry
	// has its own token cache, so parallel builds would each fetch tokens.
	v, err, _ := s.group.Do(ref.String()+"@"+c.ResourceVersion, func() (any, error) {
		if reg := s.current(ref, c.ResourceVersion); reg != nil {
			return reg, nil
		}
		reg, secrets, err := s.build(ctx, &c)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.entries == nil {
			s.entries = map[policies.ConnectorRef]*storeEntry{}
		}
		if old, ok := s.entries[ref]; ok {
			old.registry.Close()
		}
		s.entries[ref] = &storeEntry{registry: reg, resourceVersion: c.ResourceVersion, secrets: secrets}
		return reg, nil
	})
	if err != nil {
		return nil, &c, err
	}
	return v.(*Registry), &c, nil
}

func (s *Store) current(ref policies.ConnectorRef, resourceVersion string) *Registry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[ref]; ok && e.resourceVersion == resourceVersion {
		return e.registry
	}
	return nil
}

// InvalidateSecret forgets every Registry that uses the Secret, with its tokens.
func (s *Store) InvalidateSecret(namespace, name string) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref, e := range s.entries {
		for _, sec := range e.secrets {
			if sec == key {
				e.registry.Close()
				delete(s.entries, ref)
				break
			}
		}
	}
}

// InvalidateConnector forgets a connector's Registry (it was deleted).
func (s *Store) InvalidateConnector(ref policies.ConnectorRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[ref]; ok {
		e.registry.Close()
		delete(s.entries, ref)
	}
}

// SecretProblem means a Secret the connector references is missing or malformed.
type SecretProblem struct{ Message string }

func (e *SecretProblem) Error() string { return e.Message }

func (s *Store) build(ctx context.Context, c *v1alpha1.Connector) (*Registry, []types.NamespacedName, error) {
	ref := policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name}
	origin, err := policies.OriginOf(c.Spec.Address)
	if err != nil {
		return nil, nil, &SecretProblem{err.Error()}
	}
	cfg := Config{Ref: ref, Origin: origin, Dial: s.Dial, MaxTokenFetches: s.MaxTokenFetches,
		RealmHost: c.Annotations[policies.AnnotationTokenRealmHost]}
	var secrets []types.NamespacedName
	if ref := c.Spec.CACertSecretRef; ref != nil {
		key := types.NamespacedName{Namespace: c.Namespace, Name: ref.Name}
		secrets = append(secrets, key)
		var sec corev1.Secret
		if err := s.Secrets.Get(ctx, key, &sec); err != nil {
			return nil, nil, secretError(key, err)
		}
		pool, problem := policies.CAPoolFromSecret(&sec)
		if problem != nil {
			return nil, nil, &SecretProblem{problem.Message}
		}
		cfg.RootCAs = pool
	}
	if c.Spec.Auth != nil && c.Spec.Auth.SecretRef != nil {
		// Only the Connector's own namespace, whatever secretRef.namespace says.
		key := types.NamespacedName{Namespace: c.Namespace, Name: c.Spec.Auth.SecretRef.Name}
		secrets = append(secrets, key)
		var sec corev1.Secret
		if err := s.Secrets.Get(ctx, key, &sec); err != nil {
			return nil, nil, secretError(key, err)
		}
		creds, problem := policies.BasicAuthFromSecret(&sec)
		if problem != nil {
			return nil, nil, &SecretProblem{problem.Message}
		}
		cfg.Credentials = creds
	}
	return NewRegistry(cfg), secrets, nil
}

func secretError(key types.NamespacedName, err error) error {
	if apierrors.IsNotFound(err) {
		return &SecretProblem{fmt.Sprintf("Secret %s does not exist", key)}
	}
	return err
}
