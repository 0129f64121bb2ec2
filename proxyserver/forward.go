package proxyserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver/intercept"
)

// Forward is the HTTPS_PROXY listener. A CONNECT to the registry host of a connector the caller
// may use is intercepted (intercept.go) and served by the Handler; any other CONNECT is tunnelled
// untouched, without credentials, only where the tunnel policy allows (tunnel.go). The caller's
// identity is fixed per tunnel (identify.go).
type Forward struct {
	Handler   *Handler
	Authority *intercept.Authority
	Tunnels   policies.TunnelPolicy
	// Pods identifies callers without a credential by source address; nil disables that path.
	Pods *PodsByIP
	// Resolve looks up tunnel targets (tests override it); default net.DefaultResolver.
	Resolve func(ctx context.Context, host string) ([]net.IP, error)
	// DialTunnel connects tunnels to the checked address: NewForward's net.Dialer with
	// ForwardOptions.TunnelDialTimeout (tests override it).
	DialTunnel func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ServeHTTP implements http.Handler for the forward listeners.
func (f *Forward) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		f.connect(w, r)
	case r.URL.IsAbs():
		f.plain(w, r)
	default:
		http.Error(w, "this is the connectors forward proxy: use it as HTTPS_PROXY", http.StatusBadRequest)
	}
}

func (f *Forward) connect(w http.ResponseWriter, r *http.Request) {
	c, refused := identifyForward(r, f.Handler.reviewer, f.Pods)
	if refused != nil {
		f.refuseWith(w, r, refused, nil)
		return
	}
	if c.how == "token" {
		// The token's namespace must be allowed the connector its username names.
		if d := f.Handler.auth.visible(r.Context(), c.id.Namespace, c.connectors[0]); d != nil {
			f.refuse(w, r, statusFor[d.code], d.message, c)
			return
		}
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		f.refuse(w, r, http.StatusBadRequest, "CONNECT needs host:port", c)
		return
	}
	if ref, reg, ok, denied := f.Handler.auth.registryServing(r.Context(), c.id.Namespace, c.connectors, r.Host); ok {
		if denied != nil {
			f.refuse(w, r, http.StatusServiceUnavailable, denied.message, c)
			return
		}
		if !f.Authority.Permitted(host) {
			f.refuse(w, r, http.StatusForbidden, fmt.Sprintf("connector %s's host %s is outside the interception CA's permitted domains", ref, host), c)
			return
		}
		f.Handler.log.V(1).Info("intercepting", "target", r.Host, "identity", c.id.String(), "connector", ref.String(), "via", c.how)
		in := &interception{handler: f.Handler, caller: c, ref: ref, registry: reg}
		in.serveTLS(w, f.Authority, host)
		return
	}
	target, err := checkTunnel(r.Context(), f.Tunnels, f.Resolve, host, port)
	if err != nil {
		f.refuse(w, r, http.StatusForbidden, fmt.Sprintf("tunnel to %s refused: %v", r.Host, err), c)
		return
	}
	conn, err := dialTunnel(r.Context(), f.DialTunnel, target)
	if err != nil {
		// The dial error names the resolved address; the caller gets the host it asked for.
		f.refuseWith(w, r, &refusal{status: http.StatusBadGateway, detail: err,
			message: fmt.Sprintf("tunnel to %s could not be opened: the host did not answer; retry later", r.Host)}, c)
		return
	}
	f.Handler.log.Info("tunnel", "target", r.Host, "identity", c.id.String(), "via", c.how)
	splice(w, conn)
}

// plain serves absolute-form proxy requests (plain HTTP): to a connector's registry host like an
// intercepted one; anything else is refused (use HTTPS, tunnelled by CONNECT).
func (f *Forward) plain(w http.ResponseWriter, r *http.Request) {
	if _, ok := canonicalPath(w, r); !ok {
		return
	}
	c, refused := identifyForward(r, f.Handler.reviewer, f.Pods)
	if refused != nil {
		f.refuseWith(w, r, refused, nil)
		return
	}
	hostPort := r.URL.Host
	if r.URL.Port() == "" {
		hostPort = net.JoinHostPort(r.URL.Hostname(), "80")
	}
	ref, reg, ok, denied := f.Handler.auth.registryServing(r.Context(), c.id.Namespace, c.connectors, hostPort)
	switch {
	case !ok:
		f.refuse(w, r, http.StatusForbidden, fmt.Sprintf("plain-HTTP proxying is offered only to your connectors' registries, not %s: use HTTPS", r.URL.Host), c)
		return
	case denied != nil:
		writeError(w, denied.code, ref.String(), denied.message)
		return
	}
	r.Header.Del("Proxy-Authorization")
	r.URL = &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	(&interception{handler: f.Handler, caller: c, ref: ref, registry: reg}).ServeHTTP(w, r)
}

func (f *Forward) refuse(w http.ResponseWriter, r *http.Request, status int, msg string, c *caller) {
	f.refuseWith(w, r, &refusal{status: status, message: msg}, c)
}

// refuseWith answers a refusal; its detail, if any, goes only to the log.
func (f *Forward) refuseWith(w http.ResponseWriter, r *http.Request, refused *refusal, c *caller) {
	if refused.status == http.StatusProxyAuthRequired {
		w.Header().Set("Proxy-Authenticate", challenge)
	}
	who := "unidentified"
	if c != nil {
		who = c.id.String()
	}
	keys := []any{"target", r.Host, "identity", who, "source", sourceIP(r), "status", refused.status, "reason", refused.message}
	if refused.detail != nil {
		keys = append(keys, "detail", refused.detail.Error())
	}
	f.Handler.log.Info("forward refused", keys...)
	http.Error(w, refused.message, refused.status)
}

func sourceIP(r *http.Request) string {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return host
}
