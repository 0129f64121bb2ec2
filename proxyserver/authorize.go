package proxyserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/policies/registryauth"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// authorizer decides whether a verified caller may use a route's connector, through the access
// seam the webhook and the CSI driver use too, and finds the connector's upstream.
type authorizer struct {
	access *access.Resolver
	// nodePulls authorises the node pull listeners' relayed pulls; nil disables them.
	nodePulls *NodePulls
	store     *upstream.Store
	log       logr.Logger
}

// denial is a request the caller may not make, as an OCI error.
type denial struct {
	code, message string
}

func (d *denial) Error() string { return d.message }

// authorize returns the connector's registry and Connector, and the key the caller's concurrent
// streams are limited by.
// pod is the pulling pod a node listener relayed the kubelet's credential for, else nil.
func (a *authorizer) authorize(ctx context.Context, id identity.Identity, pod *identity.Identity, method string, route Route) (*upstream.Registry, *v1alpha1.Connector, string, *denial) {
	ref := route.Connector
	from, limitKey := id.Namespace, id.String()
	if a.nodePulls.IsForwarder(id) {
		// One ServiceAccount serves every node: its per-identity limit is per node.
		limitKey += "@" + id.NodeName
		var err error
		if from, err = a.nodePulls.Authorize(ctx, id, pod, method, route); err != nil {
			return nil, nil, "", a.nodePullDenial(id, err)
		}
	}
	c, err := a.access.Resolve(ctx, from, ref)
	if err != nil {
		return nil, nil, "", a.accessDenial(ref, err)
	}
	reg, err := a.store.For(ctx, c)
	if err != nil {
		return nil, nil, "", a.storeDenial(ref, err)
	}
	return reg, c, limitKey, nil
}

// visible applies the visibility rule alone.
func (a *authorizer) visible(ctx context.Context, from string, ref policies.ConnectorRef) *denial {
	if err := a.access.CheckVisible(ctx, from, ref); err != nil {
		return a.accessDenial(ref, err)
	}
	return nil
}

// registryServing returns the one of refs, usable from namespace from, whose registry is
// host:port (the forward listener's CONNECT target), with its upstream. A matching connector
// that cannot be used (its Secret is broken, or it could not be read) is a denial, not a reason
// to tunnel its traffic past the proxy without credentials.
func (a *authorizer) registryServing(ctx context.Context, from string, refs []policies.ConnectorRef, hostPort string) (policies.ConnectorRef, *upstream.Registry, bool, *denial) {
	for _, ref := range refs {
		conn, err := a.access.Resolve(ctx, from, ref)
		if access.IsNotVisible(err) || access.IsNotFound(err) {
			continue
		}
		if err != nil {
			return ref, nil, true, a.accessDenial(ref, err)
		}
		addr, err := policies.ParseAddress(conn.Spec.Address)
		if err != nil || !addr.Registry.Matches(hostPort) {
			continue
		}
		reg, err := a.store.For(ctx, conn)
		if err != nil {
			return ref, nil, true, a.storeDenial(ref, err)
		}
		return ref, reg, true, nil
	}
	return policies.ConnectorRef{}, nil, false, nil
}

func (a *authorizer) accessDenial(ref policies.ConnectorRef, err error) *denial {
	switch {
	case access.IsNotVisible(err):
		return &denial{codeDenied, err.Error()}
	case access.IsNotFound(err):
		return &denial{codeNameUnknown, fmt.Sprintf("connector %s does not exist (deleted?): recreate it or use another connector", ref)}
	default:
		a.log.Error(err, "resolving connector", "connector", ref.String())
		return &denial{codeUnavailable, fmt.Sprintf("connector %s could not be read; retry", ref)}
	}
}

// nodePullDenial: a pull the rule refuses is DENIED with the rule's reason; a failure to read
// the pods is UNAVAILABLE, its detail (the API server's address) for the log only.
func (a *authorizer) nodePullDenial(id identity.Identity, err error) *denial {
	var refused *pullRefusedError
	if errors.As(err, &refused) {
		if refused.unauthenticated {
			return &denial{codeUnauthorized, refused.msg}
		}
		return &denial{codeDenied, refused.msg}
	}
	a.log.Error(err, "authorising a node pull", "node", id.NodeName)
	return &denial{codeUnavailable, fmt.Sprintf("the proxy could not check which pods on node %s need this pull; retry", id.NodeName)}
}

func (a *authorizer) storeDenial(ref policies.ConnectorRef, err error) *denial {
	var problem *policies.SecretProblem
	if errors.As(err, &problem) && problem.Err == nil {
		upstreamErrors.WithLabelValues("secret").Inc()
		a.log.Info("connector cannot be used", "connector", ref.String(), "reason", problem.Reason, "detail", problem.Message)
		return &denial{codeUnavailable, fmt.Sprintf("connector %s cannot be used (%s): see the Connector's conditions", ref, problem.Reason)}
	}
	a.log.Error(err, "reading connector", "connector", ref.String())
	return &denial{codeUnavailable, fmt.Sprintf("connector %s could not be read; retry", ref)}
}

// upstreamAuthDenial maps a failure to get the upstream credential to what the caller sees: what
// failed and where to look, never an address, a realm URL or a dial error (those go to the log
// and, through the controller's probes, to the Connector's conditions).
func (a *authorizer) upstreamAuthDenial(w http.ResponseWriter, ref policies.ConnectorRef, err error) *denial {
	var status *registryauth.StatusError
	switch {
	case errors.Is(err, upstream.ErrTooManyFetches):
		w.Header().Set("Retry-After", "1")
		return &denial{codeTooManyRequests, fmt.Sprintf("too many token requests in flight for connector %s: retry shortly", ref)}
	case errors.Is(err, upstream.ErrUnauthorized):
		upstreamErrors.WithLabelValues("unauthorized").Inc()
		return &denial{codeUnauthorized, fmt.Sprintf("the registry of connector %s refused the connector's credentials (%v): fix the connector's Secret; see the Connector's conditions", ref, err)}
	}
	a.log.Error(err, "upstream credential", "connector", ref.String())
	switch {
	case errors.Is(err, upstream.ErrRealmNotTrusted):
		upstreamErrors.WithLabelValues("realm").Inc()
		return &denial{codeUnavailable, fmt.Sprintf("the registry of connector %s names a token service the Connector does not allow: see the Connector's conditions", ref)}
	case errors.As(err, &status):
		upstreamErrors.WithLabelValues("token").Inc()
		return &denial{codeUnavailable, fmt.Sprintf("the registry of connector %s is unavailable: its %v; retry, and see the Connector's conditions", ref, status)}
	default:
		upstreamErrors.WithLabelValues("token").Inc()
		return &denial{codeUnavailable, fmt.Sprintf("the registry of connector %s is unavailable: it could not be reached; retry, and see the Connector's conditions", ref)}
	}
}
