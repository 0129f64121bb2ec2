// Package upstream talks to connectors' registries on behalf of callers: one pooled, TLS-verifying
// transport per connector, the registry's auth scheme computed (Harbor) or learned once (other
// registries), and bearer tokens cached per scope set, fetched single-flight and refreshed
// before they expire.
package upstream

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/registryauth"
)

// Config is everything a Registry needs about its connector.
type Config struct {
	Ref    policies.ConnectorRef
	Origin *url.URL // scheme://host[:port] of spec.address
	// Credentials, nil for anonymous connectors.
	Credentials *policies.BasicCredentials
	// RootCAs verifies the registry (system roots plus caCertSecretRef); nil means system roots.
	RootCAs *x509.CertPool
	// RealmHost, when set, is another host allowed to serve the token realm.
	RealmHost string
	// Harbor: the registry is a Harbor, whose token service is known (registryauth.HarborRealm);
	// otherwise the scheme is read from one anonymous GET /v2/.
	Harbor bool
	// Dial overrides how connections are made (tests map host names to loopback).
	Dial registryauth.DialFunc
	// MaxTokenFetches bounds concurrent token fetches for this connector (proxyserver's
	// Options.MaxTokenFetches); with 0 every fetch is refused (ErrTooManyFetches).
	MaxTokenFetches int
}

// Registry is one connector's upstream.
type Registry struct {
	cfg       Config
	transport *http.Transport
	// storage fetches object-storage redirects: no credentials ever, system roots plus the
	// connector's CAs.
	storage *http.Client

	discoverMu sync.Mutex
	scheme     registryauth.Scheme
	realm      registryauth.Realm

	tokensMu sync.Mutex
	tokens   map[string]token
	group    singleflight.Group
	fetchSem chan struct{}
}

type token struct {
	value     string
	refreshAt time.Time // 80 % of its lifetime: it is never used closer to its expiry
}

// Errors a caller maps to OCI error codes.
var (
	// ErrUnavailable: the registry or its token service could not be reached or failed.
	ErrUnavailable = registryauth.ErrUnavailable
	// ErrUnauthorized: the registry refused the connector's credentials.
	ErrUnauthorized = registryauth.ErrUnauthorized
	// ErrRealmNotTrusted: the registry named a token realm its Connector does not allow.
	ErrRealmNotTrusted = registryauth.ErrRealmNotTrusted
	// ErrTooManyFetches: the connector's token-fetch limit is reached.
	ErrTooManyFetches = errors.New("too many concurrent token fetches")
)

// NewRegistry makes a Registry; nothing is sent until the first request.
func NewRegistry(cfg Config) *Registry {
	transport := registryauth.NewTransport(cfg.RootCAs, cfg.Dial)
	storage := &http.Client{
		Transport: transport.Clone(),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many storage redirects")
			}
			req.Header.Del("Authorization") // never, on any hop
			return nil
		},
	}
	r := &Registry{cfg: cfg, transport: transport, storage: storage, tokens: map[string]token{}, fetchSem: make(chan struct{}, cfg.MaxTokenFetches)}
	if cfg.Harbor {
		r.scheme, r.realm = registryauth.SchemeBearer, registryauth.HarborRealm(cfg.Origin, cfg.RealmHost)
	}
	return r
}

// Ref is the connector this registry serves.
func (r *Registry) Ref() policies.ConnectorRef { return r.cfg.Ref }

// Origin is the registry's scheme://host[:port].
func (r *Registry) Origin() *url.URL { return r.cfg.Origin }

// Transport sends requests to the registry (pooled, TLS-verified, HTTP/1.1).
func (r *Registry) Transport() http.RoundTripper { return r.transport }

// Storage is the client for object-storage redirects (never carries credentials).
func (r *Registry) Storage() *http.Client { return r.storage }

// Close drops idle connections.
func (r *Registry) Close() {
	r.transport.CloseIdleConnections()
	r.storage.CloseIdleConnections()
}

// IsOrigin reports whether u is exactly the registry's origin (scheme, host and port): the only
// place credentials may go.
func (r *Registry) IsOrigin(u *url.URL) bool { return policies.SameOrigin(u, r.cfg.Origin) }

// Authorization returns the Authorization header value for a request needing scopes ("" when
// the registry needs none). cached reports a token-cache hit.
func (r *Registry) Authorization(ctx context.Context, scopes []string) (value string, cached bool, err error) {
	if err := r.discover(ctx); err != nil {
		return "", false, err
	}
	switch r.scheme {
	case registryauth.SchemeNone:
		return "", true, nil
	case registryauth.SchemeBasic:
		return r.BasicAuthorization(), true, nil
	}
	key := strings.Join(scopes, " ")
	if tok, ok := r.cachedToken(key); ok {
		return "Bearer " + tok, true, nil
	}
	v, err, _ := r.group.Do(key, func() (any, error) {
		if tok, ok := r.cachedToken(key); ok { // filled while this caller waited
			return tok, nil
		}
		return r.fetchToken(ctx, key, scopes)
	})
	if err != nil {
		return "", false, err
	}
	return "Bearer " + v.(string), false, nil
}

// BasicAuthorization is the connector's credential as a Basic Authorization value ("" for
// anonymous connectors), for Harbor's own API, which takes Basic credentials.
func (r *Registry) BasicAuthorization() string {
	if r.cfg.Credentials == nil {
		return ""
	}
	return r.cfg.Credentials.Header()
}

// Invalidate drops the cached token for a scope set (after the registry refused it).
func (r *Registry) Invalidate(scopes []string) {
	r.tokensMu.Lock()
	defer r.tokensMu.Unlock()
	delete(r.tokens, strings.Join(scopes, " "))
}

func (r *Registry) cachedToken(key string) (string, bool) {
	r.tokensMu.Lock()
	defer r.tokensMu.Unlock()
	t, ok := r.tokens[key]
	if !ok || time.Now().After(t.refreshAt) {
		return "", false
	}
	return t.value, true
}

// discover learns a registry's auth scheme from one anonymous GET /v2/, once per connector
// version: unlike Harbor's, another registry's token service can be anywhere, and only its
// challenge says where. The realm must pass registryauth's origin rule.
func (r *Registry) discover(ctx context.Context) error {
	r.discoverMu.Lock()
	defer r.discoverMu.Unlock()
	if r.scheme != 0 {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.Origin.JoinPath("/v2/").String(), nil)
	if err != nil {
		return err
	}
	resp, err := r.transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("%w: GET /v2/: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("%w: GET /v2/ answered HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	r.scheme, r.realm, err = registryauth.FromChallenge(resp, r.cfg.Origin, r.cfg.RealmHost)
	return err
}

// fetchToken asks the realm for a token for exactly these scopes with the connector's
// credentials, bounded per connector, and caches it until 80 % of its lifetime.
func (r *Registry) fetchToken(ctx context.Context, key string, scopes []string) (string, error) {
	select {
	case r.fetchSem <- struct{}{}:
		defer func() { <-r.fetchSem }()
	default:
		return "", ErrTooManyFetches
	}
	// The fetch outlives a caller that goes away: others wait on it (single-flight).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	tokenFetches.WithLabelValues(r.cfg.Ref.String()).Inc()
	t, err := registryauth.FetchToken(ctx, r.transport, r.realm, scopes, r.cfg.Credentials)
	if err != nil {
		return "", err
	}
	// Count from now, not issued_at: clocks differ and we only know when we received it.
	r.tokensMu.Lock()
	r.tokens[key] = token{value: t.Value, refreshAt: time.Now().Add(t.Lifetime * 8 / 10)}
	r.tokensMu.Unlock()
	return t.Value, nil
}
