package controller

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/registryauth"
)

// Harbor API paths the probes use. /users/current answers 412 to robot accounts, so the auth
// probe uses /users/current/permissions, which answers 200 to users and robots alike.
const (
	harborPingPath        = "/api/v2.0/ping"
	harborPermissionsPath = "/api/v2.0/users/current/permissions"
	registryBasePath      = "/v2/"
)

// probeBodyLimit caps how much of a probe response is read; probes only need small JSON.
const probeBodyLimit = 1 << 20

// ProbeResult is one condition's outcome.
type ProbeResult struct {
	OK      bool
	Reason  string
	Message string
}

// Prober checks a registry's liveness and the Connector's credentials. It never follows
// redirects (credentials go only to the Connector's own origin) and always verifies TLS.
type Prober struct {
	// Timeout bounds each HTTP request (Options.ProbeTimeout).
	Timeout time.Duration
}

// Probe runs the liveness probe and, when it passes, the auth probe for the Connector's class.
func (p *Prober) Probe(ctx context.Context, c *v1alpha1.Connector, creds *policies.BasicCredentials, roots *x509.CertPool) (liveness, auth ProbeResult) {
	origin, err := policies.OriginOf(c.Spec.Address)
	if err != nil {
		r := ProbeResult{Reason: v1alpha1.ReasonUnreachable, Message: err.Error()}
		return r, notProbed(v1alpha1.ConditionLivenessReady)
	}
	// The proxy's transport: credentials go to the origin only, never through an environment
	// proxy; one connection per probe.
	transport := registryauth.NewTransport(roots, nil)
	transport.DisableKeepAlives = true
	defer transport.CloseIdleConnections()
	session := &probeSession{
		origin:    origin,
		realmHost: c.Annotations[policies.AnnotationTokenRealmHost],
		creds:     creds,
		client: &http.Client{
			Transport: transport,
			Timeout:   p.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	switch c.Spec.ConnectorClassName {
	case v1alpha1.ClassOCI:
		return session.probeOCI(ctx)
	default:
		return session.probeHarbor(ctx)
	}
}

type probeSession struct {
	origin    *url.URL
	realmHost string // the Connector's AnnotationTokenRealmHost
	creds     *policies.BasicCredentials
	client    *http.Client
}

func (s *probeSession) probeHarbor(ctx context.Context) (liveness, auth ProbeResult) {
	resp, err := s.get(ctx, s.origin.JoinPath(harborPingPath).String(), nil)
	if err != nil {
		return transportFailure(err), notProbed(v1alpha1.ConditionLivenessReady)
	}
	if resp.StatusCode != http.StatusOK {
		return unexpected("GET "+harborPingPath, resp.StatusCode, "is the address a Harbor 2.x server? For another registry use connectorClassName: oci"),
			notProbed(v1alpha1.ConditionLivenessReady)
	}
	liveness = ProbeResult{OK: true, Reason: v1alpha1.ReasonAlive, Message: fmt.Sprintf("GET %s answered 200", harborPingPath)}
	if s.creds == nil {
		return liveness, anonymous()
	}
	resp, err = s.get(ctx, s.origin.JoinPath(harborPermissionsPath).String(), s.basic)
	if err != nil {
		return liveness, transportFailure(err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return liveness, ProbeResult{OK: true, Reason: v1alpha1.ReasonAuthenticated,
			Message: fmt.Sprintf("Harbor accepted the credentials of %q", s.creds.Username)}
	case http.StatusUnauthorized, http.StatusForbidden:
		return liveness, unauthorized(s.creds.Username, resp.StatusCode)
	default:
		return liveness, unexpected("GET "+harborPermissionsPath, resp.StatusCode, "check the Harbor version (2.x is required)")
	}
}

// probeOCI follows the distribution token flow: GET /v2/, then the challenge's realm with Basic
// credentials, then /v2/ again with the token.
func (s *probeSession) probeOCI(ctx context.Context) (liveness, auth ProbeResult) {
	base := s.origin.JoinPath(registryBasePath).String()
	resp, err := s.get(ctx, base, nil)
	if err != nil {
		return transportFailure(err), notProbed(v1alpha1.ConditionLivenessReady)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return unexpected("GET "+registryBasePath, resp.StatusCode, "is the address an OCI distribution registry?"),
			notProbed(v1alpha1.ConditionLivenessReady)
	}
	liveness = ProbeResult{OK: true, Reason: v1alpha1.ReasonAlive, Message: fmt.Sprintf("GET %s answered %d", registryBasePath, resp.StatusCode)}
	if s.creds == nil {
		return liveness, anonymous()
	}
	if resp.StatusCode == http.StatusOK {
		// The registry needs no auth; still check it does not reject the credentials.
		return liveness, s.expectOK(ctx, base, s.basic)
	}
	scheme, realm, err := registryauth.FromChallenge(resp, s.origin, s.realmHost)
	switch {
	case errors.Is(err, registryauth.ErrRealmNotTrusted):
		// Credentials go only to the Connector's own origin (a token realm elsewhere would
		// receive them: docs/architecture.md "Shared seams", registryauth).
		return liveness, ProbeResult{Reason: v1alpha1.ReasonRealmNotTrusted, Message: err.Error() +
			": set spec.address to the registry's external URL, or name the realm's host in the annotation " + policies.AnnotationTokenRealmHost}
	case err != nil:
		return liveness, unexpected("GET "+registryBasePath, resp.StatusCode, "the registry's 401 carries no Bearer or Basic challenge")
	case scheme == registryauth.SchemeBearer:
		return liveness, s.bearerFlow(ctx, base, realm)
	default:
		return liveness, s.expectOK(ctx, base, s.basic)
	}
}

func (s *probeSession) bearerFlow(ctx context.Context, base string, realm registryauth.Realm) ProbeResult {
	ctx, cancel := context.WithTimeout(ctx, s.client.Timeout)
	defer cancel()
	tok, err := registryauth.FetchToken(ctx, s.client.Transport, realm, nil, s.creds)
	var status *registryauth.StatusError
	switch {
	case errors.As(err, &status) && errors.Is(err, registryauth.ErrUnauthorized):
		return unauthorized(s.creds.Username, status.Status)
	case errors.As(err, &status):
		return unexpected("GET token realm", status.Status, "check the registry's token service")
	case errors.Is(err, registryauth.ErrNoToken):
		return ProbeResult{Reason: v1alpha1.ReasonUnexpectedResponse, Message: "the registry's token service answered 200 without a token"}
	case err != nil:
		return transportFailure(err)
	}
	return s.expectOK(ctx, base, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok.Value) })
}

func (s *probeSession) expectOK(ctx context.Context, target string, authorize func(*http.Request)) ProbeResult {
	resp, err := s.get(ctx, target, authorize)
	if err != nil {
		return transportFailure(err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return ProbeResult{OK: true, Reason: v1alpha1.ReasonAuthenticated,
			Message: fmt.Sprintf("the registry accepted the credentials of %q", s.creds.Username)}
	case http.StatusUnauthorized, http.StatusForbidden:
		return unauthorized(s.creds.Username, resp.StatusCode)
	default:
		return unexpected("GET "+registryBasePath, resp.StatusCode, "")
	}
}

func (s *probeSession) basic(r *http.Request) { r.Header.Set("Authorization", s.creds.Header()) }

// get sends one GET and returns the response with its body read (up to a limit) and closed, so
// callers only look at status, headers and the buffered body.
func (s *probeSession) get(ctx context.Context, target string, authorize func(*http.Request)) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "harbor-connector-controller")
	if authorize != nil {
		authorize(req)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, probeBodyLimit))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func anonymous() ProbeResult {
	return ProbeResult{OK: true, Reason: v1alpha1.ReasonAnonymous, Message: "no credentials configured: nothing to check"}
}

func notProbed(failed string) ProbeResult {
	return ProbeResult{Reason: v1alpha1.ReasonNotProbed, Message: failed + " is not True, so this probe did not run"}
}

func unauthorized(user string, status int) ProbeResult {
	return ProbeResult{Reason: v1alpha1.ReasonUnauthorized, Message: fmt.Sprintf(
		"the registry refused the credentials of %q (HTTP %d): fix the password in the Secret named by spec.auth.secretRef, or the account's permissions (robot accounts are named robot$<project>+<name>)",
		user, status)}
}

func unexpected(what string, status int, hint string) ProbeResult {
	msg := fmt.Sprintf("%s answered HTTP %d", what, status)
	if hint != "" {
		msg += ": " + hint
	}
	return ProbeResult{Reason: v1alpha1.ReasonUnexpectedResponse, Message: msg}
}

// transportFailure names what went wrong below HTTP: an untrusted or mismatched certificate, or
// an address that cannot be reached.
func transportFailure(err error) ProbeResult {
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownAuthority):
		return ProbeResult{Reason: v1alpha1.ReasonTLSUntrusted, Message: fmt.Sprintf(
			"%v: put the registry's CA certificate (PEM) in a Secret and name it in spec.caCertSecretRef", err)}
	case errors.As(err, &hostname):
		return ProbeResult{Reason: v1alpha1.ReasonTLSHostMismatch, Message: fmt.Sprintf(
			"%v: use the host name the registry's certificate is issued for in spec.address", err)}
	case errors.As(err, &invalid):
		return ProbeResult{Reason: v1alpha1.ReasonTLSUntrusted, Message: fmt.Sprintf("%v: renew the registry's certificate", err)}
	default:
		return ProbeResult{Reason: v1alpha1.ReasonUnreachable, Message: fmt.Sprintf(
			"%v: check spec.address and that the registry is reachable from the manager (DNS, network policy, proxy)", err)}
	}
}
