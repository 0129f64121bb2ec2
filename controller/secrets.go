package controller

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
)

// BasicCredentials is a registry username and password read from a kubernetes.io/basic-auth
// Secret. It formats as a redacted string so that no %v, %+v or %#v can leak the password into a
// log line, an event or a condition message.
type BasicCredentials struct {
	Username string
	Password string
}

// String redacts the password.
func (c BasicCredentials) String() string {
	return fmt.Sprintf("{Username:%s Password:<redacted>}", c.Username)
}

// GoString redacts the password for %#v.
func (c BasicCredentials) GoString() string { return c.String() }

// secretCheck is the outcome of reading the Secrets a Connector references.
type secretCheck struct {
	// Credentials is nil for anonymous Connectors.
	Credentials *BasicCredentials
	// RootCAs is the system pool plus the caCertSecretRef certificates; nil means system roots.
	RootCAs *x509.CertPool
	// Failed is set when a Secret is missing or malformed; Reason and Message say which and why.
	Failed  bool
	Reason  string
	Message string
}

// readSecrets reads the auth and CA Secrets with a live read (the manager watches Secrets by
// metadata only, so their data is never held in the informer cache).
func readSecrets(ctx context.Context, reader client.Reader, c *v1alpha1.Connector) secretCheck {
	var out secretCheck
	if ref := c.Spec.CACertSecretRef; ref != nil {
		var s corev1.Secret
		key := types.NamespacedName{Namespace: c.Namespace, Name: ref.Name}
		if err := reader.Get(ctx, key, &s); err != nil {
			return failSecret(v1alpha1.ReasonCACertSecretNotFound, notFoundOr(err,
				fmt.Sprintf("CA Secret %s named by spec.caCertSecretRef does not exist: create it with the registry's CA in a key ending .crt or .pem", key)))
		}
		pool, n, err := caPool(&s)
		if err != nil {
			return failSecret(v1alpha1.ReasonCACertInvalid, fmt.Sprintf("CA Secret %s: %v", key, err))
		}
		if n == 0 {
			return failSecret(v1alpha1.ReasonCACertInvalid,
				fmt.Sprintf("CA Secret %s has no PEM certificate in a key ending .crt or .pem: add the registry's CA certificate (PEM) under e.g. ca.crt", key))
		}
		out.RootCAs = pool
	}

	if c.Spec.Auth == nil || c.Spec.Auth.SecretRef == nil {
		out.Reason, out.Message = v1alpha1.ReasonSecretOptional, "no spec.auth: the registry is accessed anonymously"
		return out
	}
	ref := c.Spec.Auth.SecretRef
	if ref.Namespace != "" && ref.Namespace != c.Namespace {
		// The admission policy rejects this; the check stays so a Connector admitted before the
		// policy was installed can never read another namespace's Secret.
		return failSecret(v1alpha1.ReasonSecretNamespace, fmt.Sprintf(
			"spec.auth.secretRef.namespace %q differs from the Connector's namespace %q: a Connector may only use Secrets in its own namespace; remove the field or move the Secret",
			ref.Namespace, c.Namespace))
	}
	key := types.NamespacedName{Namespace: c.Namespace, Name: ref.Name}
	var s corev1.Secret
	if err := reader.Get(ctx, key, &s); err != nil {
		return failSecret(v1alpha1.ReasonSecretNotFound, notFoundOr(err,
			fmt.Sprintf("Secret %s named by spec.auth.secretRef does not exist: create a kubernetes.io/basic-auth Secret with username and password", key)))
	}
	if s.Type != corev1.SecretTypeBasicAuth {
		return failSecret(v1alpha1.ReasonSecretWrongType, fmt.Sprintf(
			"Secret %s has type %q, want %q: recreate it with type kubernetes.io/basic-auth and keys username, password",
			key, s.Type, corev1.SecretTypeBasicAuth))
	}
	var missing []string
	for _, k := range []string{corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey} {
		if len(s.Data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return failSecret(v1alpha1.ReasonSecretMissingKey, fmt.Sprintf(
			"Secret %s has no value for %s: set both username and password", key, strings.Join(missing, ", ")))
	}
	out.Credentials = &BasicCredentials{
		Username: string(s.Data[corev1.BasicAuthUsernameKey]),
		Password: string(s.Data[corev1.BasicAuthPasswordKey]),
	}
	out.Reason, out.Message = v1alpha1.ReasonSecretFound, fmt.Sprintf("Secret %s holds a username and password", key)
	return out
}

func failSecret(reason, msg string) secretCheck {
	return secretCheck{Failed: true, Reason: reason, Message: msg}
}

// notFoundOr returns msg for a NotFound error and the API error otherwise (e.g. Forbidden),
// which says itself what went wrong.
func notFoundOr(err error, msg string) string {
	if apierrors.IsNotFound(err) {
		return msg
	}
	return err.Error()
}

// caPool returns the system roots plus every certificate in the Secret's keys ending .crt or
// .pem (the seed product's rule), and how many it added. Keys are read in sorted order so an
// error always names the same key.
func caPool(s *corev1.Secret) (*x509.CertPool, int, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		if strings.HasSuffix(k, ".crt") || strings.HasSuffix(k, ".pem") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	added := 0
	for _, k := range keys {
		rest := s.Data[k]
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, 0, fmt.Errorf("key %s holds a certificate that does not parse (%v): replace it with a PEM X.509 certificate", k, err)
			}
			pool.AddCert(cert)
			added++
		}
	}
	return pool, added, nil
}
