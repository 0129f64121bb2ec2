package proxyserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// NamespaceLookup returns a namespace's labels (visibility rules read them).
type NamespaceLookup interface {
	Namespace(ctx context.Context, name string) (policies.Namespace, error)
}

// Handler serves the reverse-mode layout /v2/namespaces/<ns>/connectors/<name>/<repo>/...
type Handler struct {
	Store      *upstream.Store
	Reviewer   *identity.Reviewer
	Namespaces NamespaceLookup
	Limits     *Limiter
	// NodePulls, when set, authorises the node pull listeners' relayed pulls.
	NodePulls *NodePulls
	Log       logr.Logger
	// StallTimeout aborts a transfer that moves no bytes for this long (default 2 minutes).
	StallTimeout time.Duration

	proxyOnce sync.Once
	proxy     http.Handler
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := h.begin(w, r)
	defer rec.finish()
	switch {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		h.serveBase(rec, r)
		return
	case strings.HasPrefix(r.URL.Path, "/v2/_catalog"):
		writeError(rec, codeUnsupported, "", "listing repositories (_catalog) is not offered through the connectors proxy: ask for a repository by name")
		return
	}
	route, err := ParseReversePath(r.URL.Path)
	if err != nil {
		writeRouteError(rec, err)
		return
	}
	rec.route = &route
	id, ok := h.identify(rec, r, route.Connector.String())
	if !ok {
		return
	}
	rec.identity = &id
	h.serve(rec, r, id, route, false)
}

// serveBase answers GET /v2/ itself: 401 with the proxy's Basic challenge without a
// credential (so Docker-style clients send the pair from config.json), 200 otherwise.
func (h *Handler) serveBase(w *recorder, r *http.Request) {
	if _, ok := h.identify(w, r, ""); !ok {
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("{}"))
}

// identify verifies the caller's ServiceAccount token; on failure it has answered already.
func (h *Handler) identify(w http.ResponseWriter, r *http.Request, connector string) (identity.Identity, bool) {
	token, err := identity.TokenFromRequest(r)
	if err != nil {
		writeError(w, codeUnauthorized, connector, "no credential: send a ServiceAccount token for audience "+strings.Join(h.Reviewer.Audiences, ",")+" as the password of Basic auth (any username) or as a Bearer token")
		return identity.Identity{}, false
	}
	id, err := h.Reviewer.Review(r.Context(), token)
	if err != nil {
		var unauth *identity.Unauthenticated
		if errors.As(err, &unauth) {
			writeError(w, codeUnauthorized, connector, "the ServiceAccount token was refused: "+unauth.Reason)
		} else {
			h.Log.Error(err, "identifying caller")
			writeError(w, codeUnavailable, connector, "the proxy could not verify the token with the API server; retry")
		}
		return identity.Identity{}, false
	}
	return id, true
}

// serve authorises the caller for the route's connector and relays the request.
func (h *Handler) serve(w *recorder, r *http.Request, id identity.Identity, route Route, native bool) {
	ctx := r.Context()
	ref := route.Connector
	limitKey := id.String()
	var err error
	if h.NodePulls.IsForwarder(id) {
		// One ServiceAccount serves every node: its per-identity limit is per node.
		limitKey += "@" + id.NodeName
		err = h.NodePulls.Authorize(ctx, id, r.Method, route, h.authorize)
	} else {
		err = h.authorize(ctx, id.Namespace, ref)
	}
	if err != nil {
		writeError(w, codeDenied, ref.String(), err.Error())
		return
	}
	registry, connector, err := h.Store.Get(ctx, ref)
	if err != nil {
		h.writeStoreError(w, ref, err)
		return
	}
	release, ok := h.Limits.Acquire(limitKey, ref.String())
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, codeTooManyRequests, ref.String(), fmt.Sprintf("too many concurrent transfers for %s or through connector %s: retry shortly", id, ref))
		return
	}
	defer release()

	query, from := mountQuery(r, route, native)
	scopes := policies.ScopesFor(r.Method, route.Repository, from)
	auth, cached, err := registry.Authorization(ctx, scopes)
	if err != nil {
		h.writeUpstreamAuthError(w, ref, err)
		return
	}
	if cached {
		tokenCache.WithLabelValues("hit").Inc()
	} else {
		tokenCache.WithLabelValues("fetch").Inc()
	}
	upstreamCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st := &requestState{
		route: route, registry: registry, identity: id, scopes: scopes, auth: auth, query: query, native: native,
		passRedirects: connector.Annotations[policies.AnnotationStorageRedirects] == "pass-through",
		cancel:        cancel, tokenCached: cached,
	}
	w.state = st
	activeStreams.Inc()
	defer activeStreams.Dec()
	h.proxyHandler().ServeHTTP(w, r.WithContext(withState(upstreamCtx, st)))
}

// authorize applies the visibility rule shared with the webhook and the CSI driver to a
// caller in namespace.
func (h *Handler) authorize(ctx context.Context, namespace string, ref policies.ConnectorRef) error {
	caller, err := h.Namespaces.Namespace(ctx, namespace)
	if err != nil {
		return fmt.Errorf("cannot read the caller's namespace %s: %v", namespace, err)
	}
	owner := caller
	if ref.Namespace != namespace {
		if owner, err = h.Namespaces.Namespace(ctx, ref.Namespace); err != nil {
			return fmt.Errorf("connector %s is not visible from namespace %s", ref, namespace)
		}
	}
	return policies.CanUseConnector(caller, owner, ref.Name)
}

func (h *Handler) writeStoreError(w http.ResponseWriter, ref policies.ConnectorRef, err error) {
	var secret *upstream.SecretProblem
	switch {
	case errors.Is(err, upstream.ErrConnectorNotFound):
		writeError(w, codeNameUnknown, ref.String(), fmt.Sprintf("connector %s does not exist (deleted?): recreate it or use another connector", ref))
	case errors.As(err, &secret):
		upstreamErrors.WithLabelValues("secret").Inc()
		writeError(w, codeUnavailable, ref.String(), fmt.Sprintf("connector %s cannot be used: %s; see the Connector's conditions", ref, secret.Message))
	default:
		h.Log.Error(err, "reading connector", "connector", ref.String())
		writeError(w, codeUnavailable, ref.String(), fmt.Sprintf("connector %s could not be read; retry", ref))
	}
}

func (h *Handler) writeUpstreamAuthError(w http.ResponseWriter, ref policies.ConnectorRef, err error) {
	switch {
	case errors.Is(err, upstream.ErrUnauthorized):
		upstreamErrors.WithLabelValues("unauthorized").Inc()
		writeError(w, codeUnauthorized, ref.String(), fmt.Sprintf("the registry of connector %s refused the connector's credentials: %v; fix the connector's Secret", ref, err))
	case errors.Is(err, upstream.ErrTooManyFetches):
		w.Header().Set("Retry-After", "1")
		writeError(w, codeTooManyRequests, ref.String(), fmt.Sprintf("too many token requests in flight for connector %s: retry shortly", ref))
	default:
		upstreamErrors.WithLabelValues("token").Inc()
		writeError(w, codeUnavailable, ref.String(), fmt.Sprintf("the registry of connector %s is unavailable: %v", ref, err))
	}
}

// mountQuery rewrites a cross-repository mount's from= into the registry's repository name when
// it names a repository of the same connector; otherwise it drops mount and from, so the registry
// answers 202 and the client uploads the blob itself. A mount can never reach another
// connector's repositories.
func mountQuery(r *http.Request, route Route, native bool) (query, from string) {
	if route.Kind != KindUpload || r.Method != http.MethodPost || r.URL.RawQuery == "" {
		return r.URL.RawQuery, ""
	}
	q := r.URL.Query()
	rawFrom := q.Get("from")
	if q.Get("mount") == "" || rawFrom == "" {
		return r.URL.RawQuery, ""
	}
	if native {
		return r.URL.RawQuery, rawFrom
	}
	ref, repo, ok := policies.ParseProxyPath(rawFrom)
	if ok && ref == route.Connector {
		q.Set("from", repo)
		return q.Encode(), repo
	}
	q.Del("mount")
	q.Del("from")
	return q.Encode(), ""
}

func writeRouteError(w http.ResponseWriter, err error) {
	var re *routeError
	if errors.As(err, &re) {
		writeError(w, re.code, "", re.message)
		return
	}
	writeError(w, codeNameInvalid, "", err.Error())
}

// upstreamURL is the registry URL a request went to (for the abandoned-upload cleanup).
func upstreamURL(st *requestState) *url.URL {
	u := *st.registry.Origin()
	u.Path = st.route.UpstreamPath()
	u.RawQuery = st.query
	return &u
}
