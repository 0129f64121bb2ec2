package upstream

import (
	"context"
	"sync"

	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/policies/registryauth"
)

// Store keeps one Registry per connector, built from the resolved Connector and its credentials
// (read live by Load, so Secret data never sits in an informer cache). A Registry is rebuilt
// when its Connector changes, and dropped when a Secret it was built from changes
// (InvalidateSecret), so rotated credentials and CAs take effect without a restart and old
// tokens are forgotten.
type Store struct {
	// Load reads a connector's credentials; the proxy reads the manager's copy of them
	// (access.LoadMirroredCredentials). Nil reads the Connector's own Secrets with Secrets
	// (access.LoadCredentials).
	Load func(ctx context.Context, c *v1alpha1.Connector) (access.Credentials, error)
	// Secrets is the live reader Load defaults to.
	Secrets client.Reader
	// Dial overrides how registries are dialled (tests map names to loopback).
	Dial registryauth.DialFunc
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

// For returns the Registry of a connector that access.Resolver returned.
func (s *Store) For(ctx context.Context, c *v1alpha1.Connector) (*Registry, error) {
	ref := policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name}
	if reg := s.current(ref, c.ResourceVersion); reg != nil {
		return reg, nil
	}
	// One build per connector version, however many requests arrive at once: every Registry
	// has its own token cache, so parallel builds would each fetch tokens.
	v, err, _ := s.group.Do(ref.String()+"@"+c.ResourceVersion, func() (any, error) {
		if reg := s.current(ref, c.ResourceVersion); reg != nil {
			return reg, nil
		}
		reg, secrets, err := s.build(ctx, c)
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
		return nil, err
	}
	return v.(*Registry), nil
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

// build makes a connector's Registry. A bad address or Secret is a *policies.SecretProblem.
func (s *Store) build(ctx context.Context, c *v1alpha1.Connector) (*Registry, []types.NamespacedName, error) {
	addr, err := policies.ParseAddress(c.Spec.Address)
	if err != nil {
		return nil, nil, &policies.SecretProblem{Reason: v1alpha1.ReasonUnreachable, Message: err.Error()}
	}
	load := s.Load
	if load == nil {
		load = func(ctx context.Context, c *v1alpha1.Connector) (access.Credentials, error) {
			return access.LoadCredentials(ctx, s.Secrets, c)
		}
	}
	creds, err := load(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	return NewRegistry(Config{
		Ref:             policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name},
		Origin:          addr.Origin,
		Credentials:     creds.Basic,
		RootCAs:         creds.RootCAs,
		RealmHost:       c.Annotations[policies.AnnotationTokenRealmHost],
		Harbor:          c.Spec.ConnectorClassName != v1alpha1.ClassOCI,
		Dial:            s.Dial,
		MaxTokenFetches: s.MaxTokenFetches,
	}), creds.Secrets, nil
}
