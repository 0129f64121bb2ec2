//go:build e2e && day2

package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

// While Jobs pull and push through every path, cert-manager is made to renew the install's root
// CA, the interception CA and the webhook's and the proxy's serving certificates (cmctl renew
// does the same), and the connector's robot is replaced: no request fails (no pod of any Job
// failed), the CAs kept their keys (rotationPolicy: Never: a renewed CA verifies what the old
// one signed, so nothing has to trust both), the serving certificates got new keys, the proxy
// serves its renewed certificate, and admission works with the webhook's.
func rotation(t *testing.T) {
	ctx := context.Background()
	tr := startTraffic(t, "rotation", 25)
	tr.running(t)
	for _, c := range []struct {
		certificate, secret string
		keepsKey            bool
	}{
		{"connectors-root-ca", "connectors-root-ca", true},
		{"connectors-intercept-ca", "connectors-intercept-ca", true},
		{"connectors-webhook", "connectors-webhook-tls", false},
		{"connectors-proxy", "connectors-proxy-tls", false},
	} {
		old := secretCert(t, c.secret)
		renew(t, c.certificate)
		var renewed *x509.Certificate
		require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
			renewed = secretCert(t, c.secret)
			return renewed.SerialNumber.Cmp(old.SerialNumber) != 0, nil
		}, func() string { return "cert-manager did not renew " + c.certificate }))
		sameKey := bytes.Equal(old.RawSubjectPublicKeyInfo, renewed.RawSubjectPublicKeyInfo)
		if c.keepsKey {
			assert.True(t, sameKey, "%s keeps its key when renewed", c.certificate)
		} else {
			assert.False(t, sameKey, "%s gets a new key when renewed", c.certificate)
		}
	}
	rotateRobot(t)
	assert.Zero(t, tr.wait(t), "no pod failed while the certificates and the robot rotated")

	// The proxy serves its renewed certificate (it reloads the files without a restart).
	want := secretCert(t, "connectors-proxy-tls")
	require.NoError(t, waitFor(ctx, time.Minute, func() (bool, error) {
		return servedProxyCert(t).SerialNumber.Cmp(want.SerialNumber) == 0, nil
	}, func() string { return "the proxy still serves its old certificate" }))
	res := runJob(t, jobSpec{namespace: nsA, name: "after-rotation", image: w.appImage(), connector: connectorName, script: "echo admitted-with-the-renewed-webhook-certificate"})
	assert.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	// The old robot is gone from Harbor: what works now works with the new one.
	startTraffic(t, "after-rotation", 2).wait(t)
}

// renew asks cert-manager to re-issue a Certificate now, as `cmctl renew` does: the Issuing
// condition set to True with reason ManuallyTriggered.
func renew(t *testing.T, certificate string) {
	t.Helper()
	ctx := context.Background()
	var cert cmapi.Certificate
	require.NoError(t, w.node.Client.Get(ctx, client.ObjectKey{Namespace: productNS, Name: certificate}, &cert))
	apiutil.SetCertificateCondition(&cert, cert.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, "ManuallyTriggered", "Certificate re-issuance manually triggered by the day 2 suite")
	require.NoError(t, w.node.Client.Status().Update(ctx, &cert))
}

func secretCert(t *testing.T, secret string) *x509.Certificate {
	t.Helper()
	var s corev1.Secret
	require.NoError(t, w.node.Client.Get(context.Background(), client.ObjectKey{Namespace: productNS, Name: secret}, &s))
	block, _ := pem.Decode(s.Data["tls.crt"])
	require.NotNil(t, block, "Secret %s has no tls.crt", secret)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert
}

// servedProxyCert is the certificate the proxy's Service presents for its name, verified
// against the install's root as workloads verify it.
func servedProxyCert(t *testing.T) *x509.Certificate {
	t.Helper()
	var svc corev1.Service
	require.NoError(t, w.node.Client.Get(context.Background(), client.ObjectKey{Namespace: productNS, Name: "connectors-proxy"}, &svc))
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(w.product.proxyCA))
	conn, err := tls.Dial("tcp", net.JoinHostPort(svc.Spec.ClusterIP, "443"), &tls.Config{RootCAs: roots, ServerName: proxyService})
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// rotateRobot replaces the connector's robot without a failed request: a second robot is
// created in Harbor, the Secret the Connector names is updated to it, and the old robot is
// deleted once the proxy's copy of the credentials holds the new one (README "Rotation").
func rotateRobot(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	oldUser := w.robot
	user, secret := w.harbor.AddRobot(project, "e2e-rotated", testharbor.ActionPull, testharbor.ActionPush)
	var s corev1.Secret
	require.NoError(t, w.node.Client.Get(ctx, client.ObjectKey{Namespace: nsA, Name: "harbor-robot"}, &s))
	s.Data = map[string][]byte{"username": []byte(user), "password": []byte(secret)}
	require.NoError(t, w.node.Client.Update(ctx, &s))
	mirror := access.MirrorKey(credentialsNS, policies.ConnectorRef{Namespace: nsA, Name: connectorName})
	require.NoError(t, waitFor(ctx, time.Minute, func() (bool, error) {
		var m corev1.Secret
		if err := w.node.Client.Get(ctx, mirror, &m); err != nil {
			return false, err
		}
		return string(m.Data[access.MirrorPasswordKey]) == secret, nil
	}, func() string { return "the manager did not copy the rotated credentials for the proxy" }))
	// The proxy reads the copy from its informer cache, a watch event behind the API server;
	// an operator deleting the old robot minutes later leaves far more room than this.
	time.Sleep(10 * time.Second)
	w.harbor.RemoveAccount(oldUser)
	w.robot, w.secret = user, secret
}
