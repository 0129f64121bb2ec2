package proxyserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// NodeForwarder is the node pull listener (README "The node pull listener"): it serves the reverse
// layout on 127.0.0.1:5050 to the node's container runtime, which pulls rewritten images from
// it over plain HTTP (containerd allows that for loopback without configuration), and relays
// every read to the central proxy with the listener's own pod-bound ServiceAccount token, plus
// the pulling pod's token when the kubelet supplied one. It holds no Harbor credentials and
// decides nothing: the central proxy checks that a pod on this node (or, on a node that pulls
// per pod, the pulling pod) needs the image. Requests that are not reads never leave the node.
type NodeForwarder struct {
	// Upstream is the central proxy's reverse listener, e.g. https://connectors-proxy.connectors-system.svc.
	Upstream *url.URL
	// TokenFile is the projected ServiceAccount token (audience connectors-proxy) the kubelet
	// keeps fresh; it is re-read so a rotated token is used without a restart.
	TokenFile string
	// CAFile is the bundle that verifies the central proxy's serving certificate; re-read when
	// it changes (cert-manager rotation).
	CAFile string
	// Recheck is how often the token and CA files are re-read (NodeOptions.Recheck); zero
	// re-reads them on every use.
	Recheck time.Duration
	// Dial overrides how the central proxy is dialled (tests).
	Dial func(network, addr string) (net.Conn, error)
	Log  logr.Logger

	once  sync.Once
	proxy *httputil.ReverseProxy
	token fileCache
	roots fileCache
	mu    sync.Mutex
	rt    http.RoundTripper
	rtCA  []byte
}

// NewNodeForwarder builds the node pull listener from o; o.Upstream must be the central proxy's
// https:// URL.
func NewNodeForwarder(o NodeOptions, log logr.Logger) (*NodeForwarder, error) {
	u, err := url.Parse(o.Upstream)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--upstream-proxy=%q: want the central proxy's https:// URL, e.g. %s", o.Upstream, DefaultOptions().Node.Upstream)
	}
	return &NodeForwarder{Upstream: u, TokenFile: o.TokenFile, CAFile: o.CAFile, Recheck: o.Recheck, Log: log}, nil
}

// fileCache re-reads a small file at most once per interval.
type fileCache struct {
	mu   sync.Mutex
	data []byte
	read time.Time
}

func (c *fileCache) get(path string, recheck time.Duration) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data != nil && time.Since(c.read) < recheck {
		return c.data, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if c.data != nil {
			return c.data, nil // keep serving with the last good copy through a brief rename gap
		}
		return nil, err
	}
	c.data, c.read = data, time.Now()
	return data, nil
}

// ServeHTTP implements http.Handler.
func (f *NodeForwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := canonicalPath(w, r); !ok {
		return
	}
	switch {
	case r.URL.Path == "/healthz" || r.URL.Path == "/readyz":
		f.serveHealth(w)
		return
	case !strings.HasPrefix(r.URL.Path, "/v2/") && r.URL.Path != "/v2":
		writeError(w, codeUnsupported, "", fmt.Sprintf("path %q is not a registry path: the node pull listener serves /v2/namespaces/<ns>/connectors/<name>/<repository>/... to the container runtime", r.URL.Path))
		return
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		writeError(w, codeUnsupported, "", fmt.Sprintf("the node pull listener serves pulls only (GET, HEAD), not %s: push through the proxy address in %s", r.Method, "/var/run/connectors"))
		return
	}
	f.once.Do(f.build)
	f.proxy.ServeHTTP(w, r)
}

func (f *NodeForwarder) serveHealth(w http.ResponseWriter) {
	// Anything on the node can ask: the answer says what is wrong, the log says where.
	if _, err := f.token.get(f.TokenFile, f.Recheck); err != nil {
		f.Log.Error(err, "health: reading the ServiceAccount token")
		http.Error(w, "the node pull listener cannot read its ServiceAccount token: see its log", http.StatusServiceUnavailable)
		return
	}
	if _, err := f.transport(); err != nil {
		f.Log.Error(err, "health: reading the central proxy's CA bundle")
		http.Error(w, "the node pull listener cannot read the central proxy's CA bundle: see its log", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

func (f *NodeForwarder) build() {
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(f.Upstream)
			// The listener's own token is the caller; the only credential the runtime sends is the
			// one the kubelet's connectors-credential-provider gave it for the pulling pod (Basic,
			// the pod's token as password, README "Per-pod pulls"), sent after the central proxy's
			// challenge for a node that pulls per pod. It travels in its own header, which the
			// central proxy reads from node listeners only.
			pr.Out.Header.Del(headerPodToken)
			if _, podToken, ok := pr.In.BasicAuth(); ok && podToken != "" {
				pr.Out.Header.Set(headerPodToken, podToken)
			}
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			if token, err := f.token.get(f.TokenFile, f.Recheck); err == nil {
				pr.Out.Header.Set("Authorization", "Bearer "+string(bytes.TrimSpace(token)))
			}
		},
		Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			rt, err := f.transport()
			if err != nil {
				return nil, err
			}
			return rt.RoundTrip(r)
		}),
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.Log.Error(err, "relaying a pull to the central proxy", "path", r.URL.Path)
			writeError(w, codeUnavailable, "", "the node pull listener cannot reach the central proxy: retry; the listener's log on this node says why")
		},
	}
}

// transport returns the pooled transport to the central proxy, rebuilt when the CA file changed.
func (f *NodeForwarder) transport() (http.RoundTripper, error) {
	pem, err := f.roots.get(f.CAFile, f.Recheck)
	if err != nil {
		return nil, fmt.Errorf("reading the central proxy's CA bundle %s: %w", f.CAFile, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rt != nil && bytes.Equal(pem, f.rtCA) {
		return f.rt, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the central proxy's CA bundle %s holds no PEM certificate", f.CAFile)
	}
	if old, ok := f.rt.(*http.Transport); ok {
		old.CloseIdleConnections()
	}
	t := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   false, // HTTP/1.1 on the blob path, as the central proxy upstream
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if dial := f.Dial; dial != nil {
		t.DialContext = func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
	}
	f.rt, f.rtCA = t, pem
	return t, nil
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
