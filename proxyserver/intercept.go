package proxyserver

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver/intercept"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// Interception: a CONNECT to a connector's registry host is answered, TLS is terminated with a
// leaf for that host minted by the interception CA, and the decrypted requests are served for
// that one connector with the identity fixed at CONNECT: the registry API by the Handler, in
// the registry's own layout, and Harbor's API by the Harbor API relay.

// interception is one intercepted tunnel (or one plain-HTTP absolute-form request).
type interception struct {
	handler  *Handler
	caller   *caller
	ref      policies.ConnectorRef
	registry *upstream.Registry
}

// serveTLS answers the CONNECT, terminates TLS with a leaf for host and serves the tunnel's
// requests until the client closes it.
func (in *interception) serveTLS(w http.ResponseWriter, authority *intercept.Authority, host string) {
	conn, err := hijack(w)
	if err != nil {
		return
	}
	tlsConn := tls.Server(conn, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return authority.Certificate(host)
		},
	})
	srv := &http.Server{Handler: in, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	_ = srv.Serve(newSingleConnListener(tlsConn))
}

// ServeHTTP serves one decrypted request.
func (in *interception) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := in.handler
	rec := newRecorder(w, r, h.audit, h.stall)
	defer rec.finish()
	rec.identity = &in.caller.id
	ref := in.ref
	path, ok := canonicalPath(rec, r)
	if !ok {
		return
	}
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
		h.serve(rec, r, in.caller.id, nil, route, true)
	case strings.HasPrefix(r.URL.Path, policies.HarborAPIPrefix):
		if allowed, reason := policies.HarborAPIAllowed(r.Method, path); !allowed {
			writeError(rec, codeDenied, ref.String(), reason)
			return
		}
		relayHarborAPI(rec, r, path, h.auth, in.caller.id, ref, in.registry, h.log)
	default:
		writeError(rec, codeDenied, ref.String(), fmt.Sprintf("%s is not served through the connectors proxy: only the registry API (/v2/) and Harbor's API (/api/v2.0/) are", r.URL.Path))
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
