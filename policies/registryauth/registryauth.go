// Package registryauth is the one client of registries' authentication that the controller's
// probes and the proxy's upstream share: the transport credentials travel on, where a
// registry's token realm is (computed for Harbor, read from a challenge for other registries,
// and trusted only on the connector's origin or the host its Connector names), and the bearer
// token fetch.
package registryauth

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
	"time"

	"github.com/docker/distribution/registry/client/auth/challenge"

	"github.com/alauda/harbor-connector/policies"
)

// DialFunc makes connections (tests map host names to loopback).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// NewTransport is the transport every request carrying a connector's credentials uses: TLS
// always verified (roots nil means the system pool), HTTP/1.1 (one HTTP/2 stream is held to its
// flow-control window: Go's HTTP/2 measured about half the blob throughput of HTTP/1.1), and no proxy from the environment, so credentials
// go to the registry's origin and nowhere else.
func NewTransport(roots *x509.CertPool, dial DialFunc) *http.Transport {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256, // Harbor PR #23591: the default 2 piles up TIME_WAIT
		ForceAttemptHTTP2:     false,
		// No ResponseHeaderTimeout: finishing a multi-GB blob PUT can take minutes
		// (moby#53700); the proxy's progress timers catch stalls instead.
	}
}

// Scheme is how a registry wants to be authenticated.
type Scheme int

const (
	SchemeNone   Scheme = iota + 1 // /v2/ answers 200 without credentials
	SchemeBearer                   // a token service
	SchemeBasic                    // Basic on every request
)

// Realm is where a registry issues bearer tokens.
type Realm struct {
	URL     *url.URL
	Service string
}

// harborService is the service name Harbor's registry is configured with.
const harborService = "harbor-registry"

// HarborRealm is Harbor's token service: /service/token on the connector's origin, or on the
// host the Connector names in AnnotationTokenRealmHost (over https). Harbor always serves it
// there, so nothing is discovered.
func HarborRealm(origin *url.URL, realmHost string) Realm {
	u := origin.JoinPath("/service/token")
	if realmHost != "" {
		u = &url.URL{Scheme: "https", Host: realmHost, Path: "/service/token"}
	}
	return Realm{URL: u, Service: harborService}
}

// Errors callers map to conditions and OCI error codes.
var (
	// ErrUnavailable: the registry or its token service could not be reached or failed.
	ErrUnavailable = errors.New("registry unavailable")
	// ErrUnauthorized: the registry refused the connector's credentials.
	ErrUnauthorized = errors.New("registry refused the connector's credentials")
	// ErrRealmNotTrusted: the token realm is neither on the connector's origin nor on the
	// host its Connector names, so credentials are not sent there (GHSA-3p65-76g6-3w7r).
	ErrRealmNotTrusted = errors.New("token realm not trusted")
	// ErrNoToken: the token service answered 200 without a token.
	ErrNoToken = errors.New("the token service answered 200 without a token")
)

// StatusError is a token service's answer other than 200; it Is ErrUnauthorized for 401 and
// 403 and ErrUnavailable otherwise.
type StatusError struct{ Status int }

func (e *StatusError) Error() string { return fmt.Sprintf("token service answered HTTP %d", e.Status) }

// Is maps the status to ErrUnauthorized or ErrUnavailable.
func (e *StatusError) Is(target error) bool {
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		return target == ErrUnauthorized
	}
	return target == ErrUnavailable
}

// RealmError is a challenge naming a realm credentials may not go to; it Is ErrRealmNotTrusted.
type RealmError struct {
	Realm  string
	Origin *url.URL
}

func (e *RealmError) Error() string {
	return fmt.Sprintf("the registry's token realm %q is not on %s, so the credentials are not sent there", e.Realm, e.Origin)
}

// Is makes errors.Is(err, ErrRealmNotTrusted) hold.
func (e *RealmError) Is(target error) bool { return target == ErrRealmNotTrusted }

// FromChallenge reads a registry's scheme and realm from its 401 answer to GET /v2/. A Bearer
// realm must pass policies.RealmAllowed for origin and realmHost (ErrRealmNotTrusted).
func FromChallenge(resp *http.Response, origin *url.URL, realmHost string) (Scheme, Realm, error) {
	if resp.StatusCode == http.StatusOK {
		return SchemeNone, Realm{}, nil
	}
	for _, c := range challenge.ResponseChallenges(resp) {
		switch strings.ToLower(c.Scheme) {
		case "bearer":
			realm, err := url.Parse(c.Parameters["realm"])
			if err != nil || realm.Host == "" || !policies.RealmAllowed(origin, realm, realmHost) {
				return 0, Realm{}, &RealmError{Realm: c.Parameters["realm"], Origin: origin}
			}
			return SchemeBearer, Realm{URL: realm, Service: c.Parameters["service"]}, nil
		case "basic":
			return SchemeBasic, Realm{}, nil
		}
	}
	return 0, Realm{}, fmt.Errorf("%w: the registry's HTTP %d on /v2/ names no Bearer or Basic challenge", ErrUnavailable, resp.StatusCode)
}

// Token is a bearer token and how long it may be used, counted from when it was received.
type Token struct {
	Value    string
	Lifetime time.Duration
}

// FetchToken asks the realm for a token for exactly these scopes (none: the registry's base)
// with creds, nil for anonymous. GET with Basic: Harbor's token service implements only GET.
func FetchToken(ctx context.Context, rt http.RoundTripper, realm Realm, scopes []string, creds *policies.BasicCredentials) (Token, error) {
	u := *realm.URL
	q := u.Query()
	if realm.Service != "" {
		q.Set("service", realm.Service)
	}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Token{}, err
	}
	if creds != nil {
		req.Header.Set("Authorization", creds.Header())
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return Token{}, fmt.Errorf("%w: token service: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return Token{}, &StatusError{Status: resp.StatusCode}
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil || (body.Token == "" && body.AccessToken == "") {
		return Token{}, fmt.Errorf("%w: %w", ErrUnavailable, ErrNoToken)
	}
	t := Token{Value: body.Token, Lifetime: time.Duration(body.ExpiresIn) * time.Second}
	if t.Value == "" {
		t.Value = body.AccessToken
	}
	if t.Lifetime <= 0 {
		t.Lifetime = 60 * time.Second // the token spec's default
	}
	return t, nil
}
