package access

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// Credentials are what a Connector's Secrets hold, read for one use and kept only in memory.
type Credentials struct {
	// Basic is nil for anonymous Connectors.
	Basic *policies.BasicCredentials
	// RootCAs is the system pool plus the caCertSecretRef certificates; nil means system roots.
	RootCAs *x509.CertPool
	// Secrets are the Secrets read, so a watcher can drop what was built from them when one
	// changes.
	Secrets []types.NamespacedName
}

// LoadCredentials reads the CA and auth Secrets a Connector references, with reader (a live
// client: Secret data is never held in an informer cache). A missing, foreign or malformed
// Secret is a *policies.SecretProblem naming the Secret, the condition reason and the fix; when
// the API server could not be asked, the problem's Err says why.
func LoadCredentials(ctx context.Context, reader client.Reader, c *v1alpha1.Connector) (Credentials, error) {
	m, err := readSecrets(ctx, reader, c)
	return m.Credentials, err
}

// material is what a Connector's Secrets hold: the credentials, plus the CA certificates as PEM
// (what the manager's copy of them carries, see mirror.go).
type material struct {
	Credentials
	// caPEM holds every certificate of the CA Secret's .crt and .pem keys, in key order; empty
	// without caCertSecretRef.
	caPEM []byte
}

func readSecrets(ctx context.Context, reader client.Reader, c *v1alpha1.Connector) (material, error) {
	var out material
	if ref := c.Spec.CACertSecretRef; ref != nil {
		key := types.NamespacedName{Namespace: c.Namespace, Name: ref.Name}
		out.Secrets = append(out.Secrets, key)
		var s corev1.Secret
		if err := reader.Get(ctx, key, &s); err != nil {
			return out, secretReadError(err, &policies.SecretProblem{CA: true, Reason: v1alpha1.ReasonCACertSecretNotFound, Message: fmt.Sprintf(
				"CA Secret %s named by spec.caCertSecretRef does not exist: create it with the registry's CA in a key ending .crt or .pem", key)})
		}
		pool, problem := policies.CAPoolFromSecret(&s)
		if problem != nil {
			return out, problem
		}
		out.RootCAs = pool
		out.caPEM = caBundle(&s)
	}
	if c.Spec.Auth == nil || c.Spec.Auth.SecretRef == nil {
		return out, nil
	}
	ref := c.Spec.Auth.SecretRef
	if ref.Namespace != "" && ref.Namespace != c.Namespace {
		// The admission policy rejects this; the check stays so a Connector admitted before the
		// policy was installed can never use another namespace's Secret.
		return out, &policies.SecretProblem{Reason: v1alpha1.ReasonSecretNamespace, Message: fmt.Sprintf(
			"spec.auth.secretRef.namespace %q differs from the Connector's namespace %q: a Connector may only use Secrets in its own namespace; remove the field or move the Secret",
			ref.Namespace, c.Namespace)}
	}
	key := types.NamespacedName{Namespace: c.Namespace, Name: ref.Name}
	out.Secrets = append(out.Secrets, key)
	var s corev1.Secret
	if err := reader.Get(ctx, key, &s); err != nil {
		return out, secretReadError(err, &policies.SecretProblem{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf(
			"Secret %s named by spec.auth.secretRef does not exist: create a kubernetes.io/basic-auth Secret with username and password", key)})
	}
	creds, problem := policies.BasicAuthFromSecret(&s)
	if problem != nil {
		return out, problem
	}
	out.Basic = creds
	return out, nil
}

// caBundle re-encodes the certificates of a CA Secret that policies.CAPoolFromSecret accepted:
// the CERTIFICATE blocks of its keys ending .crt or .pem, in sorted key order, nothing else.
func caBundle(s *corev1.Secret) []byte {
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		if strings.HasSuffix(k, ".crt") || strings.HasSuffix(k, ".pem") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []byte
	for _, k := range keys {
		certs, err := policies.PEMCertificates(s.Data[k])
		if err != nil {
			continue // CAPoolFromSecret refused such a Secret already
		}
		for _, cert := range certs {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
		}
	}
	return out
}

// secretReadError is notFound for a missing Secret; any other API error (e.g. Forbidden, which
// says itself what went wrong) keeps notFound's reason and carries the error in Err.
func secretReadError(err error, notFound *policies.SecretProblem) error {
	if !apierrors.IsNotFound(err) {
		notFound.Message, notFound.Err = err.Error(), err
	}
	return notFound
}
