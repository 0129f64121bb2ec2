package proxyserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver/identity"
)

// Who is calling. The reverse and node listeners accept only a ServiceAccount token; the forward
// listener also accepts a token in Proxy-Authorization, or, without a credential, the source
// address of a running pod the webhook marked.

// refusal is a caller the proxy could not identify: the status to answer, an OCI code for the
// registry listeners, and a message saying what to send instead.
type refusal struct {
	status  int
	code    string
	message string
	// detail is the cause for the proxy's log, never for the caller.
	detail error
}

func (r *refusal) Error() string { return r.message }

func unauthenticated(message string) *refusal {
	return &refusal{status: http.StatusUnauthorized, code: codeUnauthorized, message: message}
}

// verifyToken identifies a registry client by the ServiceAccount token it sends as the
// password of Basic auth or as a Bearer token.
func verifyToken(ctx context.Context, reviewer *identity.Reviewer, r *http.Request) (identity.Identity, *refusal) {
	token, err := identity.TokenFromRequest(r)
	if err != nil {
		return identity.Identity{}, unauthenticated("no credential: send a ServiceAccount token for audience " + strings.Join(reviewer.Audiences, ",") + " as the password of Basic auth (any username) or as a Bearer token")
	}
	return review(ctx, reviewer, token)
}

func review(ctx context.Context, reviewer *identity.Reviewer, token string) (identity.Identity, *refusal) {
	id, err := reviewer.Review(ctx, token)
	var unauth *identity.Unauthenticated
	switch {
	case errors.As(err, &unauth):
		return identity.Identity{}, unauthenticated("the ServiceAccount token was refused: " + unauth.Reason)
	case err != nil:
		return identity.Identity{}, &refusal{status: http.StatusServiceUnavailable, code: codeUnavailable, detail: err, message: "the proxy could not verify the token with the API server; retry"}
	}
	return id, nil
}

// caller is who opened a forward-proxy tunnel and which connectors it may reach through it.
type caller struct {
	id         identity.Identity
	connectors []policies.ConnectorRef
	how        string // "token" or "pod"
}

// identifyForward fixes a forward-proxy caller from Proxy-Authorization (Basic
// <ns>/<connector>:<token>) or, without one, from the source address (pods nil disables that).
func identifyForward(r *http.Request, reviewer *identity.Reviewer, pods *PodsByIP) (*caller, *refusal) {
	if value := r.Header.Get("Proxy-Authorization"); value != "" {
		probe := &http.Request{Header: http.Header{"Authorization": {value}}}
		user, token, ok := probe.BasicAuth()
		if !ok || token == "" {
			return nil, proxyAuthRequired("Proxy-Authorization must be Basic <namespace>/<connector>:<ServiceAccount token>")
		}
		user, _ = url.PathUnescape(user)
		ns, name, ok := strings.Cut(user, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Label(name)) > 0 {
			// Never echo the username: clients put tokens there too. A short hash lets the log
			// correlate attempts without holding the value.
			return nil, proxyAuthRequired(fmt.Sprintf("the proxy username must be <namespace>/<connector> (URL-escaped: <namespace>%%2F<connector>); the one sent (sha256 %s…) is not", shortHash(user)))
		}
		id, refused := review(r.Context(), reviewer, token)
		if refused != nil {
			if refused.status == http.StatusUnauthorized {
				refused.status = http.StatusProxyAuthRequired
			}
			if refused.status == http.StatusServiceUnavailable {
				refused.message = "the proxy could not verify the token; retry"
			}
			return nil, refused
		}
		return &caller{id: id, connectors: []policies.ConnectorRef{{Namespace: ns, Name: name}}, how: "token"}, nil
	}
	if pods == nil {
		return nil, proxyAuthRequired("send Proxy-Authorization: Basic <namespace>/<connector>:<ServiceAccount token> (identification by pod address is disabled)")
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return nil, proxyAuthRequired("unknown source address")
	}
	pod, err := pods.Pod(r.Context(), host)
	var noPod *noPodError
	switch {
	case errors.As(err, &noPod):
		return nil, proxyAuthRequired(err.Error() + ": send Proxy-Authorization with a ServiceAccount token instead")
	case err != nil:
		// An API server failure: its text names the API server's address, which is not the
		// workload's business. The refusal's detail goes to the log only.
		return nil, &refusal{status: http.StatusServiceUnavailable, code: codeUnavailable, detail: err,
			message: "the proxy could not look up the pod behind your address; retry, or send Proxy-Authorization with a ServiceAccount token"}
	}
	refs, err := policies.ParseConnectorAnnotation(pod.ConnectorAnnotation, pod.Namespace)
	if err != nil {
		return nil, &refusal{status: http.StatusForbidden, code: codeDenied, message: err.Error()}
	}
	sa := pod.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	return &caller{id: identity.Identity{Namespace: pod.Namespace, ServiceAccount: sa, PodName: pod.Name, NodeName: pod.Node}, connectors: refs, how: "pod"}, nil
}

func proxyAuthRequired(message string) *refusal {
	return &refusal{status: http.StatusProxyAuthRequired, code: codeUnauthorized, message: message}
}

// shortHash identifies a credential-like value in messages and logs without revealing it.
func shortHash(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:4])
}
