package manifests_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The install's certificates form a chain: the selfSigned Issuer signs roots only (the install's
// root CA and the interception CA, a root of its own), and a CA Issuer backed by the root's
// Secret signs the serving certificates, whose names the root's name constraints admit. The
// Secrets keep the names the binaries mount, the root's key is mounted by no workload, and the
// webhooks' caBundle comes from a certificate the root signed.
func TestInstallCertificateChain(t *testing.T) {
	objs := render(t, filepath.Join(root, "config", "default"))
	issuers := map[string]cmapi.Issuer{}
	certs := map[string]cmapi.Certificate{}
	for _, obj := range objs {
		switch obj.GetKind() {
		case "Issuer":
			var iss cmapi.Issuer
			fromUnstructured(t, obj, &iss)
			issuers[iss.Name] = iss
		case "Certificate":
			var crt cmapi.Certificate
			fromUnstructured(t, obj, &crt)
			certs[crt.Name] = crt
		}
	}
	bySecret := map[string]cmapi.Certificate{}
	issuedBy := map[string]string{}
	for _, crt := range certs {
		bySecret[crt.Spec.SecretName] = crt
		issuedBy[crt.Name] = crt.Spec.IssuerRef.Name
	}
	assert.Equal(t, map[string]string{
		"connectors-root-ca":      "connectors-selfsigned",
		"connectors-intercept-ca": "connectors-selfsigned",
		"connectors-webhook":      "connectors-ca",
		"connectors-proxy":        "connectors-ca",
	}, issuedBy)

	for _, crt := range certs {
		assert.Equal(t, "Issuer", crt.Spec.IssuerRef.Kind, crt.Name)
		require.NotNil(t, crt.Spec.PrivateKey, crt.Name)
		assert.Equal(t, cmapi.ECDSAKeyAlgorithm, crt.Spec.PrivateKey.Algorithm, "%s: ECDSA P-256", crt.Name)
		assert.Equal(t, 256, crt.Spec.PrivateKey.Size, crt.Name)
		iss, ok := issuers[crt.Spec.IssuerRef.Name]
		require.True(t, ok, "%s: Issuer %s is in the install", crt.Name, crt.Spec.IssuerRef.Name)
		switch {
		case iss.Spec.SelfSigned != nil:
			assert.True(t, crt.Spec.IsCA, "the selfSigned Issuer signs roots only, not %s", crt.Name)
		case iss.Spec.CA != nil:
			rootCA, ok := bySecret[iss.Spec.CA.SecretName]
			require.True(t, ok, "Issuer %s's Secret is a Certificate's", iss.Name)
			assert.True(t, rootCA.Spec.IsCA)
			assert.NotNil(t, issuers[rootCA.Spec.IssuerRef.Name].Spec.SelfSigned, "%s is a root", rootCA.Name)
			assert.False(t, crt.Spec.IsCA, "%s is a serving certificate", crt.Name)
			assert.Equal(t, cmapi.RotationPolicyAlways, crt.Spec.PrivateKey.RotationPolicy, "%s gets a new key at each renewal", crt.Name)
			assert.Empty(t, crt.Spec.IPAddresses, "%s: the root admits no IP address", crt.Name)
			require.NotEmpty(t, crt.Spec.DNSNames, crt.Name)
			for _, name := range crt.Spec.DNSNames {
				assert.True(t, permittedDNS(rootCA, name), "%s's name %s is outside %s's name constraints (clients would refuse it)", crt.Name, name, rootCA.Name)
			}
		default:
			t.Errorf("Issuer %s is neither selfSigned nor CA", iss.Name)
		}
	}

	rootCA := certs["connectors-root-ca"]
	require.NotNil(t, rootCA.Spec.Duration)
	assert.GreaterOrEqual(t, rootCA.Spec.Duration.Duration, 5*365*24*time.Hour, "a long-lived root")
	assert.Equal(t, cmapi.RotationPolicyNever, rootCA.Spec.PrivateKey.RotationPolicy, "a renewed root verifies what the old one signed")
	nc := rootCA.Spec.NameConstraints
	require.NotNil(t, nc, "the root vouches for the product's Services only")
	assert.True(t, nc.Critical)
	require.NotNil(t, nc.Excluded)
	assert.ElementsMatch(t, []string{"0.0.0.0/0", "::/0"}, nc.Excluded.IPRanges)

	mounted := map[string]bool{}
	for _, w := range renderedWorkloads(t) {
		for _, v := range w.template.Spec.Volumes {
			if v.Secret != nil {
				mounted[v.Secret.SecretName] = true
				_, ok := bySecret[v.Secret.SecretName]
				assert.True(t, ok, "%s mounts Secret %s, which no Certificate makes", w.name, v.Secret.SecretName)
			}
		}
	}
	for _, secret := range []string{"connectors-webhook-tls", "connectors-proxy-tls", "connectors-intercept-ca"} {
		assert.True(t, mounted[secret], "the binaries read %s", secret)
	}
	assert.False(t, mounted[rootCA.Spec.SecretName], "no workload mounts the root's key")

	injected := 0
	for _, obj := range objs {
		kind := obj.GetKind()
		if kind != "MutatingWebhookConfiguration" && kind != "ValidatingWebhookConfiguration" {
			continue
		}
		injected++
		ref := obj.GetAnnotations()["cert-manager.io/inject-ca-from"]
		ns, name, _ := strings.Cut(ref, "/")
		assert.Equal(t, productNS, ns, "%s %s", kind, obj.GetName())
		require.Contains(t, certs, name, "%s %s injects the CA of Certificate %s", kind, obj.GetName(), ref)
		assert.NotNil(t, issuers[certs[name].Spec.IssuerRef.Name].Spec.CA, "the caBundle is the root, stable across renewals")
	}
	assert.Equal(t, 2, injected)
}

// permittedDNS applies the root's permitted DNS domains as RFC 5280 does: the domain itself or
// any name below it.
func permittedDNS(rootCA cmapi.Certificate, name string) bool {
	nc := rootCA.Spec.NameConstraints
	if nc == nil || nc.Permitted == nil {
		return true
	}
	for _, d := range nc.Permitted.DNSDomains {
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}
