package proxyserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver/identity"
)

// An API server failure as client-go words it: it names the API server's address.
var errAPIDown = errors.New(`Get "https://10.96.0.1:443/api/v1/pods": dial tcp 10.96.0.1:443: connect: connection refused`)

// internals are the parts of errAPIDown a workload must never read.
var internals = []string{"10.96.0.1", "dial tcp", "connection refused", "/api/v1"}

type failingReader struct{}

func (failingReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errAPIDown
}

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errAPIDown
}

func assertNoInternals(t *testing.T, what, message string) {
	t.Helper()
	for _, hidden := range internals {
		assert.NotContains(t, message, hidden, what)
	}
}

// A node pull the proxy cannot check (the API server is away) is UNAVAILABLE, retryable, and
// says nothing of the API server; a pull the rule refuses stays DENIED with the rule's reason.
func TestNodePullAPIFailureIsUnavailableWithoutDetail(t *testing.T) {
	forwarder := identity.Identity{Namespace: "connectors-node", ServiceAccount: "connectors-node", NodeName: "node-1"}
	route := Route{Connector: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, Repository: "team/app", Kind: KindManifest}
	a := &authorizer{log: logr.Discard(), nodePulls: &NodePulls{Forwarders: map[string]bool{forwarder.String(): true}, Pods: emptyIndex(), Live: failingReader{}}}

	_, _, _, d := a.authorize(context.Background(), forwarder, nil, http.MethodGet, route)
	require.NotNil(t, d)
	assert.Equal(t, codeUnavailable, d.code)
	assert.Contains(t, d.message, "node-1")
	assert.Contains(t, d.message, "retry")
	assertNoInternals(t, "node pull", d.message)

	a.nodePulls.Live = &countingReader{}
	_, _, _, d = a.authorize(context.Background(), forwarder, nil, http.MethodGet, route)
	require.NotNil(t, d)
	assert.Equal(t, codeDenied, d.code)
	assert.Equal(t, policies.NodePullRefusal(policies.PullRequest{Node: "node-1", Connector: route.Connector, Repository: "team/app"}), d.message)
}

// A forward caller identified by address while the API server is away gets 503 and a retry
// hint, not the API server's error; an address no pod has is still 407 with what to send.
func TestPodIdentityAPIFailureIsUnavailableWithoutDetail(t *testing.T) {
	r := httptest.NewRequest(http.MethodConnect, "http://harbor.test:443", nil)
	r.RemoteAddr = "10.1.2.3:40000"

	_, refused := identifyForward(r, nil, &PodsByIP{Index: emptyIndex(), Live: failingReader{}, Wait: time.Millisecond})
	require.NotNil(t, refused)
	assert.Equal(t, http.StatusServiceUnavailable, refused.status)
	assert.Contains(t, refused.message, "retry")
	assertNoInternals(t, "pod identity", refused.message)
	assert.ErrorIs(t, refused.detail, errAPIDown, "the cause is kept for the log")

	_, refused = identifyForward(r, nil, &PodsByIP{Index: emptyIndex(), Live: &countingReader{}, Wait: time.Millisecond})
	require.NotNil(t, refused)
	assert.Equal(t, http.StatusProxyAuthRequired, refused.status)
	assert.Contains(t, refused.message, "has address 10.1.2.3")
}

// The node listener's health endpoint, which anything on the node can read, names what is
// wrong but not the files it reads.
func TestNodeListenerHealthNamesNoPath(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(token, []byte("t"), 0o600))
	f := &NodeForwarder{TokenFile: token, CAFile: filepath.Join(dir, "secret-place", "ca.crt"), Log: logr.Discard()}

	rec := httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "CA bundle")
	assert.NotContains(t, rec.Body.String(), dir)

	f = &NodeForwarder{TokenFile: filepath.Join(dir, "secret-place", "token"), CAFile: token, Log: logr.Discard()}
	rec = httptest.NewRecorder()
	f.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Contains(t, rec.Body.String(), "ServiceAccount token")
	assert.NotContains(t, rec.Body.String(), dir)
}
