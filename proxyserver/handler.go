package proxyserver

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/podindex"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// Handler serves the reverse-mode layout /v2/namespaces/<ns>/connectors/<name>/<repo>/... (the
// reverse listener, and the node pull listeners through it), and serves decrypted requests of
// the forward listener's intercepted tunnels. Per request: identify the caller, route, authorise,
// compute the upstream credential, relay, audit.
type Handler struct {
	reviewer *identity.Reviewer
	auth     *authorizer
	limits   *Limiter
	relay    *relay
	log      logr.Logger
	audit    logr.Logger
	stall    time.Duration

	// pods is the index of marked pods (node pulls, and the forward listener's identification
	// by address); livePods reads pods from the API server. Both nil without NewHandler.
	pods     *podindex.Index
	livePods client.Reader
}

// MarkedPods is the handler's index of marked pods; the proxy is ready once it has synced.
func (h *Handler) MarkedPods() *podindex.Index { return h.pods }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := newRecorder(w, r, h.audit, h.stall)
	defer rec.finish()
	if _, ok := canonicalPath(rec, r); !ok {
		return
	}
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
	id, refused := verifyToken(r.Context(), h.reviewer, r)
	if refused != nil {
		h.writeRefusal(rec, refused, route.Connector.String())
		return
	}
	rec.identity = &id
	pod, refused := h.pullingPod(rec, r, id)
	if refused != nil {
		h.writeRefusal(rec, refused, route.Connector.String())
		return
	}
	h.serve(rec, r, id, pod, route, false)
}

// pullingPod verifies the pod token a node listener relayed, and notes on the audit line how the
// pull is authorised. The header is honoured from node listeners only; the relay drops it with
// the caller's other credentials (dropCallerCredentials).
func (h *Handler) pullingPod(rec *recorder, r *http.Request, id identity.Identity) (*identity.Identity, *refusal) {
	if !h.auth.nodePulls.IsForwarder(id) {
		return nil, nil
	}
	token := r.Header.Get(headerPodToken)
	if token == "" {
		rec.notePull("node", nil)
		return nil, nil
	}
	pod, refused := review(r.Context(), h.reviewer, token)
	if refused != nil {
		refused.message = "the pulling pod's credential (from the kubelet's connectors-credential-provider): " + refused.message
		return nil, refused
	}
	rec.notePull("pod", &pod)
	return &pod, nil
}

// serveBase answers GET /v2/ itself: 401 with the proxy's Basic challenge without a
// credential (so Docker-style clients send the pair from config.json), 200 otherwise.
func (h *Handler) serveBase(w *recorder, r *http.Request) {
	if _, refused := verifyToken(r.Context(), h.reviewer, r); refused != nil {
		h.writeRefusal(w, refused, "")
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("{}"))
}

// serve authorises the caller for the route's connector, computes the upstream credential for
// the request's scope and relays it. native: the forward listener's intercepted requests, in
// the registry's own layout.
// pod: the pulling pod, for a node listener's per-pod pull (pullingPod).
func (h *Handler) serve(w *recorder, r *http.Request, id identity.Identity, pod *identity.Identity, route Route, native bool) {
	ctx := r.Context()
	ref := route.Connector
	registry, connector, limitKey, denied := h.auth.authorize(ctx, id, pod, r.Method, route)
	if w.pullIdentity != "" {
		nodePulls.WithLabelValues(w.pullIdentity, strconv.FormatBool(denied == nil)).Inc()
	}
	if denied != nil {
		writeError(w, denied.code, ref.String(), denied.message)
		return
	}
	release, ok := h.limits.Acquire(limitKey, ref.String())
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
		d := h.auth.upstreamAuthDenial(w, ref, err)
		writeError(w, d.code, ref.String(), d.message)
		return
	}
	w.tokenCached = &cached
	if cached {
		tokenCache.WithLabelValues("hit").Inc()
	} else {
		tokenCache.WithLabelValues("fetch").Inc()
	}
	upstreamCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	h.relay.serve(w, r.WithContext(upstreamCtx), &upstreamCall{
		route: route, registry: registry, scopes: scopes, auth: auth, query: query, native: native,
		passRedirects: connector.Annotations[policies.AnnotationStorageRedirects] == "pass-through",
		cancel:        cancel,
		clientBody:    w.body,
	})
}

// writeRefusal answers a caller the proxy could not identify; the refusal's detail goes to the
// log only.
func (h *Handler) writeRefusal(w http.ResponseWriter, refused *refusal, connector string) {
	if refused.detail != nil {
		h.log.Error(refused.detail, "identifying the caller", "reason", refused.message)
	}
	writeError(w, refused.code, connector, refused.message)
}

func writeRouteError(w http.ResponseWriter, err error) {
	if re, ok := err.(*routeError); ok {
		writeError(w, re.code, "", re.message)
		return
	}
	writeError(w, codeNameInvalid, "", err.Error())
}

// newHandler assembles a Handler from its parts (setup.go wires them to a manager).
func newHandler(reviewer *identity.Reviewer, resolver *access.Resolver, nodePulls *NodePulls, store *upstream.Store, opts Options, log logr.Logger) *Handler {
	return &Handler{
		reviewer: reviewer,
		auth:     &authorizer{access: resolver, nodePulls: nodePulls, store: store, log: log},
		limits:   &Limiter{PerIdentity: opts.MaxStreamsPerIdentity, PerConnector: opts.MaxStreamsPerConnector},
		relay:    newRelay(log, opts.StallTimeout),
		log:      log,
		audit:    auditLogger(opts.AuditLog, log),
		stall:    opts.StallTimeout,
	}
}

func auditLogger(audit, fallback logr.Logger) logr.Logger {
	if audit.GetSink() == nil {
		return fallback
	}
	return audit
}
