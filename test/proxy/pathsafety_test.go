package proxy_test

import (
	"bufio"
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// What an outside review reproduced against a real Harbor behind its nginx (issue 12): a path
// the proxy checked in one form reached Harbor in another, because the front resolves dot
// segments and encoded separators. The test Harbor normalises paths as that nginx does, so each
// spelling below reached /service/token, /c/login or /v2/_catalog with the robot's credentials
// before every listener refused non-canonical paths.
var dotSegmentPaths = []string{
	"/api/v2.0/../../service/token?service=harbor-registry&scope=repository:team/app:pull,push",
	"/api/v2.0/%2e%2e/%2e%2e/service/token?service=harbor-registry&scope=repository:team/app:pull,push",
	"/api/v2.0/%2E%2E/%2E%2E/service/token?service=harbor-registry&scope=repository:team/app:pull,push",
	"/api/v2.0/..%2F..%2Fservice/token?service=harbor-registry&scope=repository:team/app:pull,push",
	"/api/v2.0/projects/../../../c/login",
	"/api/v2.0/../../v2/_catalog",
	"/v2/team/app/../../_catalog",
	"/v2/team/app/manifests/%2e%2e/%2e%2e/%2e%2e/service/token",
	"/api/v2.0/projects/team/repositories/app%5C..%5C..%5C/artifacts",
	"/api//v2.0/projects",
}

// Through an intercepted tunnel and as plain-HTTP absolute-form requests, with the workload's
// own token for its own connector: every spelling is a 400 that says why, and Harbor's token
// service is never asked.
func TestForwardRefusesNonCanonicalPaths(t *testing.T) {
	h := forwardHarbor(t)
	token := saToken(t, nsA)
	proxy := &url.URL{Scheme: "http", User: url.UserPassword(nsA+"/fwd", token), Host: forwardAddr}
	c := goClient("127.0.0.1", proxy)
	for _, scheme := range []string{"https", "http"} {
		for _, p := range dotSegmentPaths {
			t.Run(scheme+p, func(t *testing.T) {
				before, sessions := h.TokenFetches(), len(h.IssuedSessions())
				resp, err := c.Get(scheme + "://" + h.Host() + p)
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
				assert.Contains(t, string(body), "canonical")
				assert.NotContains(t, string(body), `"token"`)
				assert.Equal(t, before, h.TokenFetches(), "the token service was reached")
				assert.Equal(t, sessions, len(h.IssuedSessions()), "Harbor's core was reached")
			})
		}
	}
}

// The reverse listener refuses the same spellings with a 400 before routing, instead of
// net/http's redirect to the normalised path.
func TestReverseRefusesNonCanonicalPaths(t *testing.T) {
	token := saToken(t, nsA)
	for _, p := range []string{
		"/v2/namespaces/" + nsA + "/connectors/harbor/team/../../../../_catalog",
		"/v2/namespaces/" + nsA + "/connectors/harbor/team/%2e%2e/app/manifests/v1",
		"/v2/namespaces/" + nsA + "/connectors/harbor/team%2Fapp/manifests/v1",
		"/v2/namespaces/" + nsA + "/connectors/harbor//team/app/manifests/v1",
		"/v2/../healthz",
	} {
		resp := request(t, "GET", p, token, nil)
		e := readOCIError(t, resp)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, p)
		require.NotEmpty(t, e.Errors, p)
		assert.Contains(t, e.Errors[0].Message, "canonical", p)
	}
}

// The Harbor API relay serves an allow-list: reading and managing artifacts with the
// connector's credentials works, anything that returns or creates a credential or a session is
// refused with a message that says so, and Harbor's session cookie never reaches the client.
func TestHarborAPIAllowList(t *testing.T) {
	h := forwardHarbor(t)
	proxy := &url.URL{Scheme: "http", User: url.UserPassword(nsA+"/fwd", saToken(t, nsA)), Host: forwardAddr}
	c := goClient("127.0.0.1", proxy)
	do := func(method, path string) (*http.Response, string) {
		req, err := http.NewRequest(method, "https://"+h.Host()+path, strings.NewReader("{}"))
		require.NoError(t, err)
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := do("GET", "/api/v2.0/projects")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the robot's credentials were added: %s", body)
	assert.Contains(t, body, `"team"`)
	assert.Empty(t, resp.Header.Values("Set-Cookie"))
	for _, refused := range []struct{ method, path string }{
		{"POST", "/api/v2.0/robots"},
		{"GET", "/api/v2.0/robots"},
		{"POST", "/api/v2.0/projects/team/robots"},
		{"GET", "/api/v2.0/users/current"},
		{"GET", "/api/v2.0/users/current/permissions"},
		{"PUT", "/api/v2.0/users/1/cli_secret"},
		{"GET", "/api/v2.0/systeminfo/getcert"},
		{"DELETE", "/api/v2.0/projects/team"},
	} {
		resp, body := do(refused.method, refused.path)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s %s: %s", refused.method, refused.path, body)
		assert.Contains(t, body, "DENIED", refused.path)
		assert.Contains(t, body, refused.path, "the refusal names the endpoint")
	}
}

// Harbor's core sets its sid cookie on registry and API answers, errors included; no listener
// passes it on: reverse, forward (intercepted registry API, Harbor API relay, its 404s) and the
// node pull listener.
func TestNoHarborSessionReachesClients(t *testing.T) {
	h := forwardHarbor(t)
	pushSample(t, "cookie")
	before := len(h.IssuedSessions()) + len(harbor.IssuedSessions())
	noCookie := func(what string, resp *http.Response, wantStatus int) {
		t.Helper()
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, wantStatus, resp.StatusCode, what)
		assert.Empty(t, resp.Header.Values("Set-Cookie"), what)
	}
	noCookie("reverse", request(t, "GET", pathA("cookie/manifests/v1"), saToken(t, nsA), nil), http.StatusOK)

	proxy := &url.URL{Scheme: "http", User: url.UserPassword(nsA+"/fwd", saToken(t, nsA)), Host: forwardAddr}
	fwd := goClient("127.0.0.1", proxy)
	_, err := manifestVia(fwd, h, "cookie-fwd") // pushes nothing: a 404 from Harbor, with its cookie
	require.NoError(t, err)
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/v2/team/cookie-fwd/manifests/v1", http.StatusNotFound},
		{"/api/v2.0/projects", http.StatusOK},
		{"/api/v2.0/projects/no-such-project", http.StatusNotFound},
	} {
		req, _ := http.NewRequest("GET", "https://"+h.Host()+c.path, nil)
		req.Header.Set("Accept", manifestTypes)
		resp, err := fwd.Do(req)
		require.NoError(t, err, c.path)
		noCookie("forward "+c.path, resp, c.status)
	}

	l := startNodeListener(t, proxyAddr)
	pod := workloadPod(t, nsA, nodeName, nsA+"/harbor", l.image(nsA, "harbor", "cookie"))
	defer func() { _ = k8s.Delete(context.Background(), pod) }()
	req, _ := http.NewRequest("GET", "http://"+l.addr+"/v2/"+policies.ProxyPath(policies.ConnectorRef{Namespace: nsA, Name: "harbor"})+"/team/cookie/manifests/v1", nil)
	req.Header.Set("Accept", manifestTypes)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	noCookie("node listener", resp, http.StatusOK)

	assert.Greater(t, len(h.IssuedSessions())+len(harbor.IssuedSessions()), before, "Harbor did set sessions meanwhile")
}

// A workload that puts its token in the proxy username (a common mistake) never sees it echoed,
// and the proxy does not log it.
func TestProxyUsernameIsNeverEchoed(t *testing.T) {
	forwardHarbor(t)
	token := saToken(t, nsA)
	status, reply := connectReply(t, "harbor.test:443", basicUser(token, token))
	assert.Equal(t, http.StatusProxyAuthRequired, status)
	assert.Contains(t, reply, "<namespace>/<connector>")
	sig := token[strings.LastIndex(token, ".")+1:]
	assert.NotContains(t, reply, sig, "the reply echoes the username")
	// The token as one half of <namespace>/<connector>: neither half is a name, so neither is
	// looked up or named in a refusal.
	for _, user := range []string{nsA + "/" + token, token + "/fwd", nsA + "%2F" + token} {
		status, reply := connectReply(t, "harbor.test:443", basicUser(user, token))
		assert.Equal(t, http.StatusProxyAuthRequired, status, "username of the form %s", strings.ReplaceAll(user, token, "<token>"))
		assert.NotContains(t, reply, sig, "the reply echoes the username")
	}
	assert.NotContains(t, logs.String(), sig, "the log holds the username")
}

// A CONNECT to the registry of a connector the caller may use but that cannot be used (its CA
// Secret holds no certificate) is answered with what is wrong, not tunnelled past the proxy
// without credentials.
func TestForwardBrokenConnectorIsNotTunnelled(t *testing.T) {
	h := forwardHarbor(t)
	require.NoError(t, connectorWithSecret(context.Background(), nsA, "fwd-broken", h.URL(), "robot$team+none", "unused-password", []byte("not a certificate"), nil))
	status, reply := connectReply(t, h.Host(), basicUser(nsA+"/fwd-broken", saToken(t, nsA)))
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, reply, "connector "+nsA+"/fwd-broken cannot be used")
	assert.Contains(t, reply, "see the Connector's conditions")
}

// connectReply sends one CONNECT to the forward proxy and returns its refusal's status and body.
func connectReply(t *testing.T, target, proxyAuthorization string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", forwardAddr)
	require.NoError(t, err)
	defer conn.Close()
	req, err := http.NewRequest(http.MethodConnect, "http://"+target, nil)
	require.NoError(t, err)
	req.Host = target
	req.Header.Set("Proxy-Authorization", proxyAuthorization)
	require.NoError(t, req.Write(conn))
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// A workload learns what failed and where to look, never an internal address, a dial error or a
// realm URL: those go to the proxy's log and the Connector's conditions.
func TestErrorBodiesDiscloseNoInternals(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := ln.Addr().String()
	ln.Close()
	require.NoError(t, connectorWithSecret(ctx, nsA, "down", "https://"+closedAddr, "robot$team+down", "down-password", harbor.CACertPEM(), nil))

	realm := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://realm.internal.example:8443/token",service="registry"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer realm.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: realm.Certificate().Raw})
	require.NoError(t, connectorWithSecret(ctx, nsA, "badrealm", realm.URL, "robot$x", "realm-password", caPEM, nil))
	c := &v1alpha1.Connector{}
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: nsA, Name: "badrealm"}, c))
	c.Spec.ConnectorClassName = v1alpha1.ClassOCI
	require.NoError(t, k8s.Update(ctx, c))
	require.NoError(t, waitProxySees(ctx, c, func(cached client.Object) bool {
		return cached.(*v1alpha1.Connector).Spec.ConnectorClassName == v1alpha1.ClassOCI
	}))

	_, port, _ := net.SplitHostPort(closedAddr)
	for name, hidden := range map[string][]string{
		"down":     {"127.0.0.1", port, "dial", "connect:", "refused"},
		"badrealm": {"realm.internal", "8443", "/token"},
	} {
		resp := request(t, "GET", "/v2/namespaces/"+nsA+"/connectors/"+name+"/team/app/manifests/v1", saToken(t, nsA), nil)
		e := readOCIError(t, resp)
		require.NotEmpty(t, e.Errors, name)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, name)
		assert.Contains(t, e.Errors[0].Message, "connector "+nsA+"/"+name, name)
		assert.Contains(t, e.Errors[0].Message, "see the Connector's conditions", name)
		for _, h := range hidden {
			assert.NotContains(t, e.Errors[0].Message, h, name)
		}
	}

	// A tunnel whose target does not answer: the reply names the host asked for, not the
	// address it resolved to or the dial error.
	forwardHarbor(t)
	forwardProxy.Resolve = func(context.Context, string) ([]net.IP, error) { return []net.IP{net.ParseIP(allowedMirror)}, nil }
	t.Cleanup(func() { forwardProxy.Resolve = nil })
	status, reply := connectReply(t, "mirror.internal.test:"+port, basicUser(nsA+"/fwd", saToken(t, nsA)))
	assert.Equal(t, http.StatusBadGateway, status)
	assert.Contains(t, reply, "mirror.internal.test:"+port)
	for _, h := range []string{allowedMirror, "dial", "connect:", "refused"} {
		assert.NotContains(t, reply, h, "tunnel")
	}
}
