package certmanager_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
)

const productNS = "connectors-system"

// The install's cert-manager objects, rendered from config/default as they are applied, get
// their certificates from cert-manager's own controllers, and cainjector puts the install's
// root into the webhook configurations: what a cluster with cert-manager does, with nothing
// issued by the test.
func TestInstallCertificates(t *testing.T) {
	ctx := context.Background()
	inst := applyInstall(t)

	t.Run("every Certificate is Ready", func(t *testing.T) {
		for _, crt := range inst.certificates {
			waitForReady(t, crt.Name)
		}
	})

	rootPEM := rootCA(t, inst)

	t.Run("serving certificates chain to the install's root with the names they ask for", func(t *testing.T) {
		for _, crt := range inst.certificates {
			if crt.Spec.IsCA {
				continue
			}
			secret := getSecret(t, crt.Spec.SecretName)
			verifyServing(t, crt, secret, rootPEM)
		}
	})

	t.Run("the CAs are self-signed roots as asked", func(t *testing.T) {
		for _, crt := range inst.certificates {
			if !crt.Spec.IsCA {
				continue
			}
			secret := getSecret(t, crt.Spec.SecretName)
			ca := parseCertificate(t, secret.Data[corev1.TLSCertKey])
			assert.True(t, ca.IsCA, crt.Name)
			assert.Equal(t, crt.Spec.CommonName, ca.Subject.CommonName)
			assert.NoError(t, ca.CheckSignatureFrom(ca), "%s is self-signed", crt.Name)
			assert.Equal(t, secret.Data[corev1.TLSCertKey], secret.Data[cmmeta.TLSCAKey], "%s: a root's ca.crt is itself", crt.Name)
			if nc := crt.Spec.NameConstraints; nc != nil {
				assert.Equal(t, nc.Critical, ca.PermittedDNSDomainsCritical, crt.Name)
				assert.ElementsMatch(t, nc.Permitted.DNSDomains, ca.PermittedDNSDomains, crt.Name)
				assert.Len(t, ca.ExcludedIPRanges, len(nc.Excluded.IPRanges), crt.Name)
			}
		}
	})

	t.Run("CertificateRequests are approved by cert-manager's approver", func(t *testing.T) {
		var list cmapi.CertificateRequestList
		require.NoError(t, k8s.List(ctx, &list, client.InNamespace(productNS)))
		requested := map[string]bool{}
		for i := range list.Items {
			cr := &list.Items[i]
			requested[cr.Annotations[cmapi.CertificateNameKey]] = true
			approved := apiutil.GetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionApproved)
			require.NotNil(t, approved, "CertificateRequest %s has no Approved condition", cr.Name)
			assert.Equal(t, cmmeta.ConditionTrue, approved.Status, cr.Name)
			assert.Equal(t, "cert-manager.io", approved.Reason, cr.Name)
			assert.Equal(t, approver.ApprovedMessage, approved.Message, cr.Name)
			assert.Equal(t, cmapi.CertificateRequestReasonIssued, apiutil.CertificateRequestReadyReason(cr), cr.Name)
		}
		for _, crt := range inst.certificates {
			assert.True(t, requested[crt.Name], "no CertificateRequest for Certificate %s", crt.Name)
		}
	})

	t.Run("cainjector puts the install's root into the webhook configurations", func(t *testing.T) {
		waitForCABundles(t, inst, rootPEM)
	})

	t.Run("a deleted serving Secret is issued again", func(t *testing.T) {
		crt := inst.certificate(t, "connectors-webhook")
		old := getSecret(t, crt.Spec.SecretName)
		require.NoError(t, k8s.Delete(ctx, old))
		waitFor(t, "Secret "+crt.Spec.SecretName+" issued again", func(ctx context.Context) error {
			var s corev1.Secret
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: productNS, Name: crt.Spec.SecretName}, &s); err != nil {
				return err
			}
			if s.UID == old.UID || len(s.Data[corev1.TLSCertKey]) == 0 {
				return errors.New("not yet recreated")
			}
			return nil
		})
		waitForReady(t, crt.Name)
		renewed := getSecret(t, crt.Spec.SecretName)
		verifyServing(t, crt, renewed, rootPEM)
		assert.NotEqual(t, old.Data[corev1.TLSCertKey], renewed.Data[corev1.TLSCertKey])
		assert.NotEqual(t, old.Data[corev1.TLSPrivateKeyKey], renewed.Data[corev1.TLSPrivateKeyKey], "rotationPolicy Always: a new key")
		waitForCABundles(t, inst, rootPEM) // the root, so the webhooks' caBundle does not change
	})

	// `cmctl renew`: the Issuing condition set by hand. Both roots set rotationPolicy Never: they
	// keep key and subject, so what the old certificate signed verifies under the new one and
	// what the new one signs verifies under the old one, which is what pods still hold.
	t.Run("renewal keeps both roots' keys", func(t *testing.T) {
		oldRoot, newRoot := renew(t, "connectors-root-ca")
		assert.Equal(t, oldRoot.RawSubjectPublicKeyInfo, newRoot.RawSubjectPublicKeyInfo, "rotationPolicy Never")
		assert.NotEqual(t, oldRoot.SerialNumber, newRoot.SerialNumber)
		proxy := inst.certificate(t, "connectors-proxy")
		leaf := parseCertificate(t, getSecret(t, proxy.Spec.SecretName).Data[corev1.TLSCertKey])
		verifyChain(t, proxy, leaf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newRoot.Raw}))

		oldCA, newCA := renew(t, "connectors-intercept-ca")
		assert.Equal(t, oldCA.RawSubjectPublicKeyInfo, newCA.RawSubjectPublicKeyInfo, "rotationPolicy Never")
		assert.NotEqual(t, oldCA.SerialNumber, newCA.SerialNumber)
		// A leaf the proxy signs with the renewed CA, checked by a pod that has the old one.
		key, err := tls.X509KeyPair(getSecret(t, "connectors-intercept-ca").Data[corev1.TLSCertKey], getSecret(t, "connectors-intercept-ca").Data[corev1.TLSPrivateKeyKey])
		require.NoError(t, err)
		leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(1), DNSNames: []string{"harbor.example.com"},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, newCA, &leafKey.PublicKey, key.PrivateKey)
		require.NoError(t, err)
		intercepted, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		oldPool := x509.NewCertPool()
		oldPool.AddCert(oldCA)
		_, err = intercepted.Verify(x509.VerifyOptions{Roots: oldPool, DNSName: "harbor.example.com"})
		assert.NoError(t, err, "a leaf signed after the renewal verifies under the interception CA a pod already has")
	})
}

// renew triggers a Certificate's issuance as `cmctl renew` does and returns its certificate
// before and after.
func renew(t *testing.T, name string) (before, after *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	var crt cmapi.Certificate
	require.NoError(t, k8s.Get(ctx, client.ObjectKey{Namespace: productNS, Name: name}, &crt))
	require.NotNil(t, crt.Status.Revision, name)
	revision := *crt.Status.Revision
	before = parseCertificate(t, getSecret(t, crt.Spec.SecretName).Data[corev1.TLSCertKey])
	apiutil.SetCertificateCondition(&crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
		"ManuallyTriggered", "Certificate re-issuance manually triggered")
	require.NoError(t, k8s.Status().Update(ctx, &crt))
	waitFor(t, "Certificate "+name+" issued again", func(ctx context.Context) error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&crt), &crt); err != nil {
			return err
		}
		if crt.Status.Revision == nil || *crt.Status.Revision <= revision {
			return fmt.Errorf("revision %v", crt.Status.Revision)
		}
		return nil
	})
	waitForReady(t, name)
	after = parseCertificate(t, getSecret(t, crt.Spec.SecretName).Data[corev1.TLSCertKey])
	return before, after
}

// install is what applyInstall applied.
type install struct {
	certificates []cmapi.Certificate
	issuers      []cmapi.Issuer
	injected     []client.Object // the webhook configurations cainjector fills
}

func (in install) certificate(t *testing.T, name string) cmapi.Certificate {
	t.Helper()
	for _, crt := range in.certificates {
		if crt.Name == name {
			return crt
		}
	}
	t.Fatalf("the install has no Certificate %s", name)
	return cmapi.Certificate{}
}

// applyInstall creates the product Namespace, the Issuers, Certificates and webhook
// configurations of config/default (and nothing that needs a node), as a cluster admin.
func applyInstall(t *testing.T) install {
	t.Helper()
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	objs, err := kube.Kustomize(env, filepath.Join(root, "config", "default"))
	require.NoError(t, err)
	var out install
	for _, obj := range objs {
		var typed any
		switch obj.GetKind() {
		case "Namespace":
			if obj.GetName() != productNS {
				continue
			}
		case "Issuer":
			out.issuers = append(out.issuers, cmapi.Issuer{})
			typed = &out.issuers[len(out.issuers)-1]
		case "Certificate":
			out.certificates = append(out.certificates, cmapi.Certificate{})
			typed = &out.certificates[len(out.certificates)-1]
		case "MutatingWebhookConfiguration":
			typed = &admissionregistrationv1.MutatingWebhookConfiguration{}
			out.injected = append(out.injected, typed.(client.Object))
		case "ValidatingWebhookConfiguration":
			typed = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			out.injected = append(out.injected, typed.(client.Object))
		default:
			continue
		}
		if typed != nil {
			require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, typed))
		}
		err := k8s.Create(context.Background(), obj)
		if !apierrors.IsAlreadyExists(err) {
			require.NoError(t, err, "%s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName())
		}
	}
	require.NotEmpty(t, out.certificates, "config/default has no Certificates")
	require.NotEmpty(t, out.injected, "config/default has no webhook configurations")
	return out
}

// rootCA is the ca.crt of the install's root: the Secret behind its CA Issuer.
func rootCA(t *testing.T, inst install) []byte {
	t.Helper()
	for _, iss := range inst.issuers {
		if iss.Spec.CA != nil {
			pemBytes := getSecret(t, iss.Spec.CA.SecretName).Data[cmmeta.TLSCAKey]
			require.NotEmpty(t, pemBytes, "Issuer %s's Secret has no ca.crt", iss.Name)
			return pemBytes
		}
	}
	t.Fatal("the install has no CA Issuer")
	return nil
}

// verifyServing checks a serving certificate's Secret: its chain to the root as clients verify
// it, its names, key and ca.crt.
func verifyServing(t *testing.T, crt cmapi.Certificate, secret *corev1.Secret, rootPEM []byte) {
	t.Helper()
	leaf := parseCertificate(t, secret.Data[corev1.TLSCertKey])
	verifyChain(t, crt, leaf, rootPEM)
	assert.ElementsMatch(t, crt.Spec.DNSNames, leaf.DNSNames, crt.Name)
	assert.Equal(t, x509.ECDSA, leaf.PublicKeyAlgorithm, crt.Name)
	assert.Equal(t, rootPEM, secret.Data[cmmeta.TLSCAKey], "%s: ca.crt is the install's root", crt.Name)
	_, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	assert.NoError(t, err, "%s: tls.key is tls.crt's key", crt.Name)
}

// verifyChain verifies leaf against the root for each name crt asks for, the root's name
// constraints included.
func verifyChain(t *testing.T, crt cmapi.Certificate, leaf *x509.Certificate, rootPEM []byte) {
	t.Helper()
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(rootPEM))
	require.NotEmpty(t, crt.Spec.DNSNames, crt.Name)
	for _, name := range crt.Spec.DNSNames {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.NoError(t, err, "%s for %s", crt.Name, name)
	}
}

// waitForCABundles waits until every webhook of the install's webhook configurations has
// want as its caBundle.
func waitForCABundles(t *testing.T, inst install, want []byte) {
	t.Helper()
	for _, obj := range inst.injected {
		assert.NotEmpty(t, obj.GetAnnotations()["cert-manager.io/inject-ca-from"], "%s is annotated for cainjector", obj.GetName())
		waitFor(t, "caBundle of "+obj.GetName(), func(ctx context.Context) error {
			current := obj.DeepCopyObject().(client.Object)
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), current); err != nil {
				return err
			}
			for i, bundle := range caBundles(current) {
				if !bytes.Equal(bundle, want) {
					return fmt.Errorf("webhook %d: caBundle %q", i, bundle)
				}
			}
			return nil
		})
	}
}

func caBundles(obj client.Object) [][]byte {
	var out [][]byte
	switch o := obj.(type) {
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		for _, w := range o.Webhooks {
			out = append(out, w.ClientConfig.CABundle)
		}
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		for _, w := range o.Webhooks {
			out = append(out, w.ClientConfig.CABundle)
		}
	}
	return out
}

func waitForReady(t *testing.T, name string) {
	t.Helper()
	ready := cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue}
	waitFor(t, "Certificate "+name+" Ready", func(ctx context.Context) error {
		var crt cmapi.Certificate
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: productNS, Name: name}, &crt); err != nil {
			return err
		}
		if !apiutil.CertificateHasCondition(&crt, ready) {
			return fmt.Errorf("conditions %+v", crt.Status.Conditions)
		}
		return nil
	})
}

func getSecret(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKey{Namespace: productNS, Name: name}, &s))
	return &s
}

func parseCertificate(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	require.NotNil(t, block, "no PEM certificate")
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}
