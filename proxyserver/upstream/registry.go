// Package upstream talks to connectors' registries on behalf of callers: one pooled, TLS-verifying
// transport per connector, the registry's auth scheme learned once, and bearer tokens cached
// per scope set, fetched single-flight and refreshed before they expire.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/docker/distribution/registry/client/auth/challenge"
	"golang.org/x/sync/singleflight"

	"github.com/alauda/harbor-connector/policies"
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
	// Dial overrides how connections are made (tests map host names to loopback).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxTokenFetches bounds concurrent token fetches for this connector.
	MaxTokenFetches int
}

// scheme is how a registry wants to be authenticated.
type scheme int

const (
	schemeUnknown scheme = iota
	schemeNone           // /v2/ answered 200 without credentials
	schemeBearer         // token service
	schemeBasic          // Basic on every request
)

// Registry is one connector's upstream.
type Registry struct {
	cfg       Config
	transport *http.Transport
	// storage fetches object-storage redirects: no credentials ever, system roots plus the
	// connector's CAs.
	storage *http.Client

	discoverMu sync.Mutex
	scheme     scheme
	realm      *url.URL
	service    string

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
	ErrUnavailable = errors.New("registry unavailable")
	// ErrUnauthorized: the registry refused the connector's credentials.
	ErrUnauthorized = errors.New("registry refused the connector's credentials")
	// ErrTooManyFetches: the connector's token-fetch limit is reached.
	ErrTooManyFetches = errors.New("too many concurrent token fetches")
)

// NewRegistry makes a Registry; nothing is sent until the first request.
func NewRegistry(cfg Config) *Registry {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	dial := dialer.DialContext
	if cfg.Dial != nil {
		dial = cfg.Dial
	}
	tlsConfig := &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	transport := &http.Transport{
		// No HTTP_PROXY from the environment: credentials go to the registry's origin only.
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256, // Harbor PR #23591: the default 2 piles up TIME_WAIT
		// HTTP/1.1: Go's HTTP/2 halves blob throughput (research proxy-anchors §2.2).
		ForceAttemptHTTP2: false,
		// No ResponseHeaderTimeout: finishing a multi-GB blob PUT can take minutes
		// (moby#53700); stalls are caught by the proxy's progress timers instead.
	}
	storageTransport := transport.Clone()
	storage := &http.Client{
		Transport: storageTransport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many storage redirects")
			}
			req.Header.Del("Authorization") // never, on any hop
			return nil
		},
	}
	max := cfg.MaxTokenFetches
	if max <= 0 {
		max = 4
	}
	return &Registry{cfg: cfg, transport: transport, storage: storage, tokens: map[string]token{}, fetchSem: make(chan struct{}, max)}
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
	case schemeNone:
		return "", true, nil
	case schemeBasic:
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

// discover learns the registry's auth scheme from one anonymous GET /v2/. The token realm must
// be on the connector's own origin (or the host the Connector names): credentials never go to a
// realm a response made up (GHSA-3p65-76g6-3w7r).
func (r *Registry) discover(ctx context.Context) error {
	r.discoverMu.Lock()
	defer r.discoverMu.Unlock()
	if r.scheme != schemeUnknown {
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
	switch resp.StatusCode {
	case http.StatusOK:
		r.scheme = schemeNone
		return nil
	case http.StatusUnauthorized:
	default:
		return fmt.Errorf("%w: GET /v2/ answered HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	for _, c := range challenge.ResponseChallenges(resp) {
		switch strings.ToLower(c.Scheme) {
		case "bearer":
			realm, err := url.Parse(c.Parameters["realm"])
			if err != nil || realm.Host == "" {
				return fmt.Errorf("%w: the registry's token realm %q is not a URL", ErrUnavailable, c.Parameters["realm"])
			}
			if !policies.RealmAllowed(r.cfg.Origin, realm, r.cfg.RealmHost) {
				return fmt.Errorf("%w: the registry's token realm %s is not on %s, so the credentials are not sent there (name the realm host on the Connector to allow it)", ErrUnauthorized, realm.Redacted(), r.cfg.Origin)
			}
			r.scheme, r.realm, r.service = schemeBearer, realm, c.Parameters["service"]
			return nil
		case "basic":
			r.scheme = schemeBasic
			return nil
		}
	}
	return fmt.Errorf("%w: the registry's 401 on /v2/ names no Bearer or Basic challenge", ErrUnavailable)
}

// fetchToken asks the realm for a token for exactly these scopes with the connector's
// credentials (GET with Basic, as Harbor's token service implements only GET).
func (r *Registry) fetchToken(ctx context.Context, key string, scopes []string) (string, error) {
	select {
	case r.fetchSem <- struct{}{}:
		defer func() { <-r.fetchSem }()
	default:
		return "", ErrTooManyFetches
	}
	u := *r.realm
	q := u.Query()
	if r.service != "" {
		q.Set("service", r.service)
	}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	if auth := r.BasicAuthorization(); auth != "" {
		req.Header.Set("Authorization", auth)
	}
	tokenFetches.WithLabelValues(r.cfg.Ref.String()).Inc()
	resp, err := r.transport.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("%w: token service: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", fmt.Errorf("%w (token service answered HTTP %d)", ErrUnauthorized, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%w: token service answered HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	var body struct {
		Token       string    `json:"token"`
		AccessToken string    `json:"access_token"`
		ExpiresIn   int       `json:"expires_in"`
		IssuedAt    time.Time `json:"issued_at"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil {
		return "", fmt.Errorf("%w: token service answered an unreadable body", ErrUnavailable)
	}
	value := body.Token
	if value == "" {
		value = body.AccessToken
	}
	if value == "" {
		return "", fmt.Errorf("%w: token service answered without a token", ErrUnavailable)
	}
	lifetime := time.Duration(body.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = 60 * time.Second // the token spec's default
	}
	// Count from now, not issued_at: clocks differ and we only know when we received it.
	now := time.Now()
	r.tokensMu.Lock()
	r.tokens[key] = token{value: value, refreshAt: now.Add(lifetime * 8 / 10)}
	r.tokensMu.Unlock()
	return value, nil
}
