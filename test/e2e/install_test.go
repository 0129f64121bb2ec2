//go:build e2e

package e2e_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestInstalled checks what the install left on the cluster beyond Ready workloads (install
// waited for those): cert-manager, not the suite, issued the serving certificates the pods use,
// and connectors-system enforces Pod Security restricted on a real API server.
func TestInstalled(t *testing.T) {
	ctx := context.Background()
	c := w.node.Client

	t.Run("cert-manager issued and approved every certificate", func(t *testing.T) {
		var requests cmapi.CertificateRequestList
		require.NoError(t, c.List(ctx, &requests))
		require.NotEmpty(t, requests.Items)
		for _, cr := range requests.Items {
			assert.True(t, hasCondition(cr.Status.Conditions, cmapi.CertificateRequestConditionApproved), "%s/%s approved by cert-manager's approver", cr.Namespace, cr.Name)
			assert.True(t, hasCondition(cr.Status.Conditions, cmapi.CertificateRequestConditionReady), "%s/%s signed", cr.Namespace, cr.Name)
		}
		// The proxy serves a leaf of the install's root for its Service's DNS name.
		var secret corev1.Secret
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy-tls"}, &secret))
		block, _ := pem.Decode(secret.Data["tls.crt"])
		require.NotNil(t, block)
		leaf, err := x509.ParseCertificate(block.Bytes)
		require.NoError(t, err)
		roots := x509.NewCertPool()
		require.True(t, roots.AppendCertsFromPEM(w.product.proxyCA))
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: proxyService})
		assert.NoError(t, err, "the proxy's certificate for %s under the root in its ca.crt", proxyService)
	})

	t.Run("connectors-system refuses a pod that breaks restricted", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: productNS, Name: "breaks-restricted"},
			Spec: corev1.PodSpec{
				HostNetwork: true,
				Containers:  []corev1.Container{{Name: "c", Image: localCraneImage, ImagePullPolicy: corev1.PullNever}},
			},
		}
		err := c.Create(ctx, pod)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `violates PodSecurity "restricted:latest"`)
		assert.Contains(t, err.Error(), "host namespaces")
	})
}

func hasCondition(conds []cmapi.CertificateRequestCondition, typ cmapi.CertificateRequestConditionType) bool {
	for _, c := range conds {
		if c.Type == typ && c.Status == cmmeta.ConditionTrue {
			return true
		}
	}
	return false
}
