package proxyserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/intercept"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// Forward is the HTTPS_PROXY listener. A CONNECT to the registry host of a connector the caller
// may use is intercepted with a leaf for that host and served by the same handler as reverse
// mode (native /v2/ paths, plus Harbor's /api/v2.0/ with the connector's credentials); any other
// CONNECT is tunnelled untouched, without credentials, only where the tunnel policy allows.
// The caller's identity is fixed per tunnel: a ServiceAccount token in Proxy-Authorization
// (username <ns>/<connector>), or else the source address of a running pod the webhook marked.
type Forward struct {
	*Handler
	Authority *intercept.Authority
	Tunnels   policies.TunnelPolicy
	// Pods identifies callers without a credential by source address; nil disables that path.
	Pods *PodsByIP
	// Resolve looks up tunnel targets (tests override it); default net.DefaultResolver.
	Resolve func(ctx context.Context, host string) ([]net.IP, error)
	// DialTunnel connects tunnels to the checked address (tests override it); default a
	// net.Dialer with a 10 s timeout.
	DialTunnel func(ctx context.Context, network, addr string) (net.Conn, error)
}

// caller is who opened a tunnel and which connectors it may reach through it.
type caller struct {
	id         identity.Identity
	connectors []policies.ConnectorRef
	how        string // "token" or "pod"
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

// identify fixes the caller from Proxy-Authorization or, without one, from the source address.
func (f *Forward) identify(r *http.Request) (*caller, int, string) {
	if value := r.Header.Get("Proxy-Authorization"); value != "" {
		probe := &http.Request{Header: http.Header{"Authorization": {value}}}
		user, token, ok := probe.BasicAuth()
		if !ok || token == "" {
			return nil, http.StatusProxyAuthRequired, "Proxy-Authorization must be Basic <namespace>/<connector>:<ServiceAccount token>"
		}
		user, _ = url.PathUnescape(user)
		ns, name, ok := strings.Cut(user, "/")
		if !ok || ns == "" || name == "" {
			return nil, http.StatusProxyAuthRequired, fmt.Sprintf("proxy username %q must be <namespace>/<connector> (URL-escaped: <namespace>%%2F<connector>)", user)
		}
		id, err := f.Reviewer.Review(r.Context(), token)
		if err != nil {
			var unauth *identity.Unauthenticated
			if errors.As(err, &unauth) {
				return nil, http.StatusProxyAuthRequired, "the ServiceAccount token was refused: " + unauth.Reason
			}
			return nil, http.StatusServiceUnavailable, "the proxy could not verify the token; retry"
		}
		return &caller{id: id, connectors: []policies.ConnectorRef{{Namespace: ns, Name: name}}, how: "token"}, 0, ""
	}
	if f.Pods == nil {
		return nil, http.StatusProxyAuthRequired, "send Proxy-Authorization: Basic <namespace>/<connector>:<ServiceAccount token> (identification by pod address is disabled)"
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return nil, http.StatusProxyAuthRequired, "unknown source address"
	}
	pod, err := f.Pods.Pod(r.Context(), host)
	if err != nil {
		return nil, http.StatusProxyAuthRequired, err.Error() + ": send Proxy-Authorization with a ServiceAccount token instead"
	}
	refs, err := policies.ParseConnectorAnnotation(pod.Annotations[policies.AnnotationConnector], pod.Namespace)
	if err != nil {
		return nil, http.StatusForbidden, err.Error()
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return &caller{id: identity.Identity{Namespace: pod.Namespace, ServiceAccount: sa, PodName: pod.Name, NodeName: pod.Spec.NodeName}, connectors: refs, how: "pod"}, 0, ""
}

// connectorFor returns the caller's connector whose registry is host:port, if any.
func (f *Forward) connectorFor(ctx context.Context, c *caller, hostPort string) (policies.ConnectorRef, *upstream.Registry, bool) {
	for _, ref := range c.connectors {
		if f.authorize(ctx, c.id.Namespace, ref) != nil {
			continue
		}
		reg, conn, err := f.Store.Get(ctx, ref)
		if err != nil {
			continue
		}
		rh, err := policies.RegistryHostOf(conn.Spec.Address)
		if err == nil && rh.Matches(hostPort) {
			return ref, reg, true
		}
	}
	return policies.ConnectorRef{}, nil, false
}

func (f *Forward) connect(w http.ResponseWriter, r *http.Request) {
	c, status, msg := f.identify(r)
	if c == nil {
		f.refuse(w, r, status, msg, nil)
		return
	}
	if c.how == "token" {
		// The token's namespace must be allowed the connector its username names.
		if err := f.authorize(r.Context(), c.id.Namespace, c.connectors[0]); err != nil {
			f.refuse(w, r, http.StatusForbidden, err.Error(), c)
			return
		}
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		f.refuse(w, r, http.StatusBadRequest, "CONNECT needs host:port", c)
		return
	}
	if ref, reg, ok := f.connectorFor(r.Context(), c, r.Host); ok {
		if !f.Authority.Permitted(host) {
			f.refuse(w, r, http.StatusForbidden, fmt.Sprintf("connector %s's host %s is outside the interception CA's permitted domains", ref, host), c)
			return
		}
		f.intercept(w, r, c, ref, reg, host)
		return
	}
	f.tunnel(w, r, c, host)
}

func (f *Forward) refuse(w http.ResponseWriter, r *http.Request, status int, msg string, c *caller) {
	if status == http.StatusProxyAuthRequired {
		w.Header().Set("Proxy-Authenticate", `Basic realm="connectors-proxy"`)
	}
	who := "unidentified"
	if c != nil {
		who = c.id.String()
	}
	f.Log.Info("forward refused", "target", r.Host, "identity", who, "source", sourceIP(r), "status", status, "reason", msg)
	http.Error(w, msg, status)
}

func sourceIP(r *http.Request) string {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return host
}

// intercept answers the CONNECT, terminates TLS with a leaf for host and serves the decrypted
// requests for one connector, with the identity fixed at CONNECT.
func (f *Forward) intercept(w http.ResponseWriter, r *http.Request, c *caller, ref policies.ConnectorRef, reg *upstream.Registry, host string) {
	conn, err := hijack(w)
	if err != nil {
		return
	}
	tlsConn := tls.Server(conn, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return f.Authority.Certificate(host)
		},
	})
	f.Log.V(1).Info("intercepting", "target", r.Host, "identity", c.id.String(), "connector", ref.String(), "via", c.how)
	srv := &http.Server{Handler: f.intercepted(c, ref, reg), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: nil}
	_ = srv.Serve(newSingleConnListener(tlsConn))
}

// intercepted serves one tunnel's decrypted requests.
func (f *Forward) intercepted(c *caller, ref policies.ConnectorRef, reg *upstream.Registry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := f.begin(w, r)
		defer rec.finish()
		rec.identity = &c.id
		switch {
		case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
			// The proxy answers the base itself, so clients never start their own token dance.
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			rec.WriteHeader(http.StatusOK)
			_, _ = rec.Write([]byte("{}"))
		case strings.HasPrefix(r.URL.Path, "/v2/_catalog"):
			writeError(rec, codeUnsupported, ref.String(), "listing repositories (_catalog) is not offered through the connectors proxy")
		case strings.HasPrefix(r.URL.Path, "/v2/"):
			route, err := ParseNativePath(r.URL.Path)
			if err != nil {
				writeRouteError(rec, err)
				return
			}
			route.Connector = ref
			rec.route = &route
			f.serve(rec, r, c.id, route, true)
		case strings.HasPrefix(r.URL.Path, "/api/v2.0/"):
			f.harborAPI(rec, r, c, ref, reg)
		default:
			writeError(rec, codeDenied, ref.String(), fmt.Sprintf("%s is not served through the connectors proxy: only the registry API (/v2/) and Harbor's API (/api/v2.0/) are", r.URL.Path))
		}
	})
}

// harborAPI relays Harbor API calls (harbor-cli, curl) with the connector's credentials.
func (f *Forward) harborAPI(w *recorder, r *http.Request, c *caller, ref policies.ConnectorRef, reg *upstream.Registry) {
	if err := f.authorize(r.Context(), c.id.Namespace, ref); err != nil {
		writeError(w, codeDenied, ref.String(), err.Error())
		return
	}
	origin := reg.Origin()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = origin.Scheme, origin.Host
			pr.Out.Host = origin.Host
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			if auth := reg.BasicAuthorization(); auth != "" {
				pr.Out.Header.Set("Authorization", auth)
			}
		},
		Transport: reg.Transport(),
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("Www-Authenticate")
			resp.Header.Del("Set-Cookie")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, codeUnavailable, ref.String(), fmt.Sprintf("Harbor of connector %s could not be reached: %v", ref, unwrapURL(err)))
		},
	}
	proxy.ServeHTTP(w, r)
}

// tunnel relays bytes to a permitted non-connector target, untouched.
func (f *Forward) tunnel(w http.ResponseWriter, r *http.Request, c *caller, host string) {
	_, port, _ := net.SplitHostPort(r.Host)
	ips, err := f.resolve(r.Context(), host)
	if err == nil {
		err = f.Tunnels.CheckTunnel(host, ips)
	}
	if err != nil {
		f.refuse(w, r, http.StatusForbidden, fmt.Sprintf("tunnel to %s refused: %v", r.Host, err), c)
		return
	}
	dial := f.DialTunnel
	if dial == nil {
		dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
	}
	upstreamConn, err := dial(r.Context(), "tcp", net.JoinHostPort(ips[0].String(), port))
	if err != nil {
		f.refuse(w, r, http.StatusBadGateway, fmt.Sprintf("tunnel to %s: %v", r.Host, err), c)
		return
	}
	defer upstreamConn.Close()
	conn, err := hijack(w)
	if err != nil {
		return
	}
	defer conn.Close()
	f.Log.Info("tunnel", "target", r.Host, "identity", c.id.String(), "via", c.how)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(upstreamConn, conn); closeWrite(upstreamConn) }()
	go func() { defer wg.Done(); _, _ = io.Copy(conn, upstreamConn); closeWrite(conn) }()
	wg.Wait()
}

func (f *Forward) resolve(ctx context.Context, host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	if f.Resolve != nil {
		return f.Resolve(ctx, host)
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.IP)
	}
	return out, nil
}

// plain serves absolute-form proxy requests (plain HTTP): to a connector's registry host like an
// intercepted one; anything else is refused (use HTTPS, tunnelled by CONNECT).
func (f *Forward) plain(w http.ResponseWriter, r *http.Request) {
	c, status, msg := f.identify(r)
	if c == nil {
		f.refuse(w, r, status, msg, nil)
		return
	}
	hostPort := r.URL.Host
	if r.URL.Port() == "" {
		hostPort = net.JoinHostPort(r.URL.Hostname(), "80")
	}
	ref, reg, ok := f.connectorFor(r.Context(), c, hostPort)
	if !ok {
		f.refuse(w, r, http.StatusForbidden, fmt.Sprintf("plain-HTTP proxying is offered only to your connectors' registries, not %s: use HTTPS", r.URL.Host), c)
		return
	}
	r.Header.Del("Proxy-Authorization")
	r.URL = &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	f.intercepted(c, ref, reg).ServeHTTP(w, r)
}

// hijack takes the client connection over after answering the CONNECT; bytes the server had
// already read past the request (a client that did not wait for the answer) are replayed.
func hijack(w http.ResponseWriter) (net.Conn, error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	if brw != nil && brw.Reader.Buffered() > 0 {
		buffered := io.LimitReader(brw.Reader, int64(brw.Reader.Buffered()))
		return &prefixedConn{Conn: conn, r: io.MultiReader(buffered, conn)}, nil
	}
	return conn, nil
}

// prefixedConn replays bytes the HTTP server had already buffered before the hijack.
type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// singleConnListener hands one connection to an http.Server and ends when it closes.
type singleConnListener struct {
	conn net.Conn
	once sync.Once
	done chan struct{}
}

func newSingleConnListener(c net.Conn) *singleConnListener {
	l := &singleConnListener{done: make(chan struct{})}
	l.conn = &closeNotifyConn{Conn: c, done: l.done}
	return l
}

func (l *singleConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *singleConnListener) Close() error   { return nil }
func (l *singleConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

type closeNotifyConn struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *closeNotifyConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}
