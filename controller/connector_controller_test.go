package controller_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

// secretsUsed collects every password the tests put in a Secret; TestMain asserts none of them
// appears in the manager's logs, in Events or in Connector status.
var secretsUsed sync.Map

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ctl-"}}
	require.NoError(t, k8s.Create(context.Background(), ns))
	return ns.Name
}

func basicSecret(t *testing.T, ns, name, user, pass string) *corev1.Secret {
	t.Helper()
	secretsUsed.Store(pass, true)
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": user, "password": pass},
	}
	require.NoError(t, k8s.Create(context.Background(), s))
	return s
}

func newConnector(t *testing.T, ns, name, class, address, secret string) *v1alpha1.Connector {
	t.Helper()
	c := &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ConnectorClassName(class), Address: address},
	}
	if secret != "" {
		c.Spec.Auth = &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: secret}}
	}
	return c
}

func create(t *testing.T, c *v1alpha1.Connector) *v1alpha1.Connector {
	t.Helper()
	require.NoError(t, k8s.Create(context.Background(), c))
	return c
}

// waitFor polls until the Connector's condition of type has the status and reason, and returns
// the Connector as then observed.
func waitFor(t *testing.T, c *v1alpha1.Connector, condType string, status metav1.ConditionStatus, reason string) *v1alpha1.Connector {
	t.Helper()
	var got v1alpha1.Connector
	var last string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		require.NoError(t, k8s.Get(context.Background(), client.ObjectKeyFromObject(c), &got))
		if cond := meta.FindStatusCondition(got.Status.Conditions, condType); cond != nil {
			last = fmt.Sprintf("%s/%s: %s", cond.Status, cond.Reason, cond.Message)
			if cond.Status == status && cond.Reason == reason && got.Status.ObservedGeneration == got.Generation {
				return &got
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Connector %s/%s: condition %s never became %s/%s; last seen %q", c.Namespace, c.Name, condType, status, reason, last)
	return nil
}

func TestReadyWithUserCredentials(t *testing.T) {
	ns := newNamespace(t)
	harbor.AddUser("dev-"+ns, "Dev-pass-"+ns, false)
	basicSecret(t, ns, "harbor", "dev-"+ns, "Dev-pass-"+ns)
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "harbor"))

	got := waitFor(t, c, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	for _, typ := range []string{v1alpha1.ConditionSecretReady, v1alpha1.ConditionLivenessReady, v1alpha1.ConditionAuthReady, v1alpha1.ConditionProxyReady} {
		cond := meta.FindStatusCondition(got.Status.Conditions, typ)
		require.NotNil(t, cond, typ)
		assert.Equal(t, metav1.ConditionTrue, cond.Status, "%s: %s", typ, cond.Message)
		assert.Equal(t, got.Generation, cond.ObservedGeneration)
	}
	require.NotNil(t, got.Status.Proxy)
	assert.Equal(t, proxyAddress+"/namespaces/"+ns+"/connectors/harbor", got.Status.Proxy.HTTPAddress.URL)
	assert.Equal(t, got.Generation, got.Status.ObservedGeneration)
	assertEvent(t, ns, "harbor", corev1.EventTypeNormal, v1alpha1.ReasonReady)
}

// A robot account is refused on /users/current with 412, like Harbor; the permissions probe
// accepts it.
func TestReadyWithRobotAccount(t *testing.T) {
	ns := newNamespace(t)
	harbor.AddProject("team-"+ns, false)
	robot, secret := harbor.AddRobot("team-"+ns, "ci")
	require.True(t, strings.HasPrefix(robot, "robot$"))
	basicSecret(t, ns, "robot", robot, secret)
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "robot"))
	got := waitFor(t, c, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	auth := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAuthReady)
	assert.Equal(t, v1alpha1.ReasonAuthenticated, auth.Reason)
	assert.Contains(t, auth.Message, robot)
}

func TestAnonymousConnectorIsReady(t *testing.T) {
	ns := newNamespace(t)
	c := create(t, newConnector(t, ns, "anon", "harbor", harbor.URL(), ""))
	got := waitFor(t, c, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	assert.Equal(t, v1alpha1.ReasonSecretOptional, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionSecretReady).Reason)
	assert.Equal(t, v1alpha1.ReasonAnonymous, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAuthReady).Reason)
}

// A missing Secret is reported, and creating it makes the Connector Ready through the Secret
// watch (failures are otherwise retried only hourly in this suite).
func TestMissingSecretThenCreated(t *testing.T) {
	ns := newNamespace(t)
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "later"))
	got := waitFor(t, c, v1alpha1.ConditionSecretReady, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
	ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
	assert.Equal(t, v1alpha1.ReasonSecretNotFound, ready.Reason, "Ready carries the first failing reason")
	assert.Contains(t, ready.Message, ns+"/later")
	assert.Equal(t, v1alpha1.ReasonNotProbed, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAuthReady).Reason)
	assertEvent(t, ns, "harbor", corev1.EventTypeWarning, v1alpha1.ReasonSecretNotFound)

	harbor.AddUser("late-"+ns, "Late-pass-"+ns, false)
	basicSecret(t, ns, "later", "late-"+ns, "Late-pass-"+ns)
	waitFor(t, c, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
}

func TestWrongSecretType(t *testing.T) {
	ns := newNamespace(t)
	secretsUsed.Store("opaque-pass", true)
	require.NoError(t, k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "opaque"},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{"username": "u", "password": "opaque-pass"},
	}))
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "opaque"))
	got := waitFor(t, c, v1alpha1.ConditionSecretReady, metav1.ConditionFalse, v1alpha1.ReasonSecretWrongType)
	assert.Contains(t, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionSecretReady).Message, "kubernetes.io/basic-auth")
}

func TestSecretMissingPassword(t *testing.T) {
	ns := newNamespace(t)
	require.NoError(t, k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nopass"},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "u"},
	}))
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "nopass"))
	got := waitFor(t, c, v1alpha1.ConditionSecretReady, metav1.ConditionFalse, v1alpha1.ReasonSecretMissingKey)
	assert.Contains(t, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionSecretReady).Message, "password")
}

// A wrong password is Unauthorized; fixing the Secret recovers without waiting for a retry.
func TestWrongPasswordThenFixed(t *testing.T) {
	ns := newNamespace(t)
	harbor.AddUser("fix-"+ns, "Right-pass-"+ns, false)
	s := basicSecret(t, ns, "harbor", "fix-"+ns, "Wrong-pass-"+ns)
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "harbor"))
	got := waitFor(t, c, v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonUnauthorized)
	assert.Equal(t, v1alpha1.ReasonUnauthorized, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady).Reason)
	assert.Equal(t, metav1.ConditionTrue, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionLivenessReady).Status)
	assertEvent(t, ns, "harbor", corev1.EventTypeWarning, v1alpha1.ReasonUnauthorized)

	secretsUsed.Store("Right-pass-"+ns, true)
	s.StringData = map[string]string{"password": "Right-pass-" + ns}
	require.NoError(t, k8s.Update(context.Background(), s))
	waitFor(t, c, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	assertEvent(t, ns, "harbor", corev1.EventTypeNormal, v1alpha1.ReasonAuthenticated)
}

func TestUnreachableAddress(t *testing.T) {
	ns := newNamespace(t)
	c := create(t, newConnector(t, ns, "gone", "harbor", "http://127.0.0.1:1", ""))
	got := waitFor(t, c, v1alpha1.ConditionLivenessReady, metav1.ConditionFalse, v1alpha1.ReasonUnreachable)
	assert.Contains(t, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionLivenessReady).Message, "connection refused")
	assert.Equal(t, v1alpha1.ReasonUnreachable, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady).Reason)
}

func TestNotAHarbor(t *testing.T) {
	ns := newNamespace(t)
	// The proxy stand-in answers 503 to everything but /readyz: a live server, but not Harbor.
	c := create(t, newConnector(t, ns, "other", "harbor", proxySrv.URL, ""))
	got := waitFor(t, c, v1alpha1.ConditionLivenessReady, metav1.ConditionFalse, v1alpha1.ReasonUnexpectedResponse)
	assert.Contains(t, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionLivenessReady).Message, "HTTP 503")
}

// A Harbor with a private CA is untrusted until caCertSecretRef names its CA.
func TestTLSHarborWithAndWithoutCA(t *testing.T) {
	ns := newNamespace(t)
	harborTLS.AddUser("tls-"+ns, "Tls-pass-"+ns, false)
	basicSecret(t, ns, "harbor", "tls-"+ns, "Tls-pass-"+ns)

	untrusted := create(t, newConnector(t, ns, "untrusted", "harbor", harborTLS.URL(), "harbor"))
	got := waitFor(t, untrusted, v1alpha1.ConditionLivenessReady, metav1.ConditionFalse, v1alpha1.ReasonTLSUntrusted)
	assert.Contains(t, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionLivenessReady).Message, "caCertSecretRef")

	require.NoError(t, k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor-ca"},
		Data:       map[string][]byte{"ca.crt": harborTLS.CACertPEM(), "README": []byte("not a certificate, ignored")},
	}))
	trusted := newConnector(t, ns, "trusted", "harbor", harborTLS.URL(), "harbor")
	trusted.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: "harbor-ca"}
	waitFor(t, create(t, trusted), v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)

	// Adding the CA to the first Connector's spec recovers it too.
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKeyFromObject(untrusted), untrusted))
	untrusted.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: "harbor-ca"}
	require.NoError(t, k8s.Update(context.Background(), untrusted))
	waitFor(t, untrusted, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
}

func TestTLSHostnameMismatch(t *testing.T) {
	ns := newNamespace(t)
	// A Harbor whose certificate names only harbor.test, reached as 127.0.0.1.
	h, err := testharbor.Start(testharbor.Options{TLS: true, Hosts: []string{"harbor.test"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	require.NoError(t, k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor-ca"},
		Data:       map[string][]byte{"ca.pem": h.CACertPEM()},
	}))
	c := newConnector(t, ns, "mismatch", "harbor", h.URL(), "")
	c.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: "harbor-ca"}
	got := waitFor(t, create(t, c), v1alpha1.ConditionLivenessReady, metav1.ConditionFalse, v1alpha1.ReasonTLSHostMismatch)
	assert.Contains(t, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionLivenessReady).Message, "127.0.0.1")
}

func TestCACertSecretProblems(t *testing.T) {
	ns := newNamespace(t)
	missing := newConnector(t, ns, "missing-ca", "harbor", harborTLS.URL(), "")
	missing.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: "nope"}
	got := waitFor(t, create(t, missing), v1alpha1.ConditionSecretReady, metav1.ConditionFalse, v1alpha1.ReasonCACertSecretNotFound)
	assert.Equal(t, v1alpha1.ReasonNotProbed, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionLivenessReady).Reason)

	require.NoError(t, k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "garbage"},
		Data:       map[string][]byte{"ca.crt": []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")},
	}))
	garbage := newConnector(t, ns, "garbage-ca", "harbor", harborTLS.URL(), "")
	garbage.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: "garbage"}
	waitFor(t, create(t, garbage), v1alpha1.ConditionSecretReady, metav1.ConditionFalse, v1alpha1.ReasonCACertInvalid)
}

// Class oci follows the registry's /v2/ token flow (here the test Harbor's registry).
func TestOCIClassTokenFlow(t *testing.T) {
	ns := newNamespace(t)
	harbor.AddProject("oci-"+ns, false)
	robot, secret := harbor.AddRobot("oci-"+ns, "ci")
	basicSecret(t, ns, "robot", robot, secret)
	before := harbor.TokenFetches()
	got := waitFor(t, create(t, newConnector(t, ns, "oci", "oci", harbor.URL(), "robot")), v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	assert.Equal(t, v1alpha1.ReasonAuthenticated, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAuthReady).Reason)
	assert.Greater(t, harbor.TokenFetches(), before, "the probe fetched a token from the realm")
}

// A Ready Connector is re-probed periodically: when its registry goes away it turns
// Unreachable with no change to the Connector or its Secret.
func TestPeriodicReprobe(t *testing.T) {
	ns := newNamespace(t)
	h, err := startHarbor()
	require.NoError(t, err)
	c := create(t, newConnector(t, ns, "short-lived", "harbor", h.URL(), ""))
	waitFor(t, c, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	require.NoError(t, h.Close())
	waitFor(t, c, v1alpha1.ConditionLivenessReady, metav1.ConditionFalse, v1alpha1.ReasonUnreachable)
}

// ProxyReady follows the proxy's readiness endpoint.
func TestProxyReadiness(t *testing.T) {
	ns := newNamespace(t)
	proxyReady.Store(false)
	t.Cleanup(func() { proxyReady.Store(true) })
	s := basicSecret(t, ns, "harbor", "nobody", "Proxy-test-pass")
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "harbor"))
	got := waitFor(t, c, v1alpha1.ConditionProxyReady, metav1.ConditionFalse, v1alpha1.ReasonProxyUnavailable)
	assert.Contains(t, meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionProxyReady).Message, "HTTP 503")

	proxyReady.Store(true)
	s.Labels = map[string]string{"touched": "yes"} // any Secret change triggers a re-probe
	require.NoError(t, k8s.Update(context.Background(), s))
	waitFor(t, c, v1alpha1.ConditionProxyReady, metav1.ConditionTrue, v1alpha1.ReasonProxyAvailable)
}

func assertEvent(t *testing.T, ns, name, eventType, reason string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var events corev1.EventList
		require.NoError(t, k8s.List(context.Background(), &events, client.InNamespace(ns)))
		for _, e := range events.Items {
			if e.InvolvedObject.Name == name && e.Type == eventType && e.Reason == reason {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("no %s Event with reason %s for Connector %s/%s", eventType, reason, ns, name)
}
