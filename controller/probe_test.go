package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/testca"
)

// A registry whose token realm is on another host does not receive the credentials: neither
// the realm host nor anything else sees an Authorization header.
func TestOCIRealmOnAnotherHostIsNotTrusted(t *testing.T) {
	var authSeen atomic.Int32
	realm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			authSeen.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer realm.Close()
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			authSeen.Add(1)
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="registry"`, realm.URL))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer registry.Close()

	c := &v1alpha1.Connector{Spec: v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassOCI, Address: registry.URL}}
	liveness, auth := (&Prober{Timeout: DefaultOptions().ProbeTimeout}).Probe(context.Background(), c, &policies.BasicCredentials{Username: "u", Password: "p"}, nil)
	assert.True(t, liveness.OK, liveness.Message)
	assert.False(t, auth.OK)
	assert.Equal(t, v1alpha1.ReasonRealmNotTrusted, auth.Reason)
	assert.Contains(t, auth.Message, realm.URL)
	assert.Zero(t, authSeen.Load(), "credentials were sent")
}

// Probes never follow redirects: a redirect answer is reported, and the redirect target never
// sees the credentials.
func TestProbeDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))
	defer target.Close()
	harbor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == harborPingPath {
			_, _ = w.Write([]byte("Pong"))
			return
		}
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusFound)
	}))
	defer harbor.Close()
	c := &v1alpha1.Connector{Spec: v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassHarbor, Address: harbor.URL}}
	_, auth := (&Prober{Timeout: DefaultOptions().ProbeTimeout}).Probe(context.Background(), c, &policies.BasicCredentials{Username: "u", Password: "p"}, nil)
	assert.Equal(t, v1alpha1.ReasonUnexpectedResponse, auth.Reason)
	assert.Contains(t, auth.Message, "HTTP 302")
	assert.Zero(t, followed.Load())
}

func TestProxyNotConfigured(t *testing.T) {
	p := &ProxyChecker{}
	r := p.Check(context.Background())
	assert.False(t, r.OK)
	assert.Equal(t, v1alpha1.ReasonProxyNotConfigured, r.Reason)
	assert.Empty(t, p.ConnectorURL(&v1alpha1.Connector{}))
}

func TestSummarizeTakesFirstFailure(t *testing.T) {
	conds := []metav1.Condition{
		{Type: v1alpha1.ConditionSecretReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSecretFound},
		{Type: v1alpha1.ConditionLivenessReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonTLSUntrusted, Message: "x509"},
		{Type: v1alpha1.ConditionAuthReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonNotProbed},
	}
	got := summarize(conds)
	assert.Equal(t, metav1.ConditionFalse, got.Status)
	assert.Equal(t, v1alpha1.ReasonTLSUntrusted, got.Reason)
	assert.Equal(t, "LivenessReady: x509", got.Message)
}

func TestHostOutsidePermittedDomains(t *testing.T) {
	p := &ProxyChecker{Address: "https://proxy", PermittedDomains: []string{"corp.example"}}
	out := p.CheckConnector(context.Background(), &v1alpha1.Connector{Spec: v1alpha1.ConnectorSpec{Address: "https://harbor.other.example"}})
	assert.False(t, out.OK)
	assert.Equal(t, v1alpha1.ReasonHostNotPermitted, out.Reason)
	assert.Contains(t, out.Message, "harbor.other.example")
}

// The proxy's self-signed serving CA is renewed with a new key; the manager follows the CA file
// without a restart (otherwise ProxyReady would stay False after every renewal).
func TestProxyCAFileIsReRead(t *testing.T) {
	oldCA, err := testca.New("proxy CA 1")
	require.NoError(t, err)
	newCA, err := testca.New("proxy CA 2")
	require.NoError(t, err)
	oldLeaf, err := oldCA.Issue("127.0.0.1")
	require.NoError(t, err)
	newLeaf, err := newCA.Issue("127.0.0.1")
	require.NoError(t, err)
	var serving atomic.Pointer[tls.Certificate]
	serving.Store(&oldLeaf.TLS)
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	// Clients dialling an IP send no SNI, so the certificate is chosen per connection here.
	proxy.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{*serving.Load()}}, nil
	}}
	proxy.StartTLS()
	defer proxy.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caFile, oldCA.CertPEM, 0o600))
	p := &ProxyChecker{Address: proxy.URL, RootCAFile: caFile}

	assert.True(t, p.Check(context.Background()).OK)
	serving.Store(&newLeaf.TLS)
	proxy.CloseClientConnections() // the proxy restarts with its renewed certificate
	r := p.Check(context.Background())
	assert.False(t, r.OK, "the renewed certificate is not trusted with the old CA")
	assert.Contains(t, r.Message, "certificate")
	require.NoError(t, os.WriteFile(caFile, newCA.CertPEM, 0o600))
	assert.True(t, p.Check(context.Background()).OK, "the new CA file is read without a restart")
}
