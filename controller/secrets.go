package controller

import (
	"context"
	"crypto/x509"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// secretCheck is the outcome of reading the Secrets a Connector references.
type secretCheck struct {
	// Credentials is nil for anonymous Connectors.
	Credentials *policies.BasicCredentials
	// RootCAs is the system pool plus the caCertSecretRef certificates; nil means system roots.
	RootCAs *x509.CertPool
	// Failed is set when a Secret is missing or malformed; Reason and Message say which and why.
	Failed bool
	// CAFailed: the failing Secret is the CA one, so the registry cannot be verified at all.
	CAFailed bool
	Reason   string
	Message  string
}

// readSecrets reads the auth and CA Secrets with a live read (the manager watches Secrets by
// metadata only, so their data is never held in the informer cache).
func readSecrets(ctx context.Context, reader client.Reader, c *v1alpha1.Connector) secretCheck {
	var out secretCheck
	if ref := c.Spec.CACertSecretRef; ref != nil {
		var s corev1.Secret
		key := types.NamespacedName{Namespace: c.Namespace, Name: ref.Name}
		if err := reader.Get(ctx, key, &s); err != nil {
			return failCA(v1alpha1.ReasonCACertSecretNotFound, notFoundOr(err,
				fmt.Sprintf("CA Secret %s named by spec.caCertSecretRef does not exist: create it with the registry's CA in a key ending .crt or .pem", key)))
		}
		pool, problem := policies.CAPoolFromSecret(&s)
		if problem != nil {
			return failCA(problem.Reason, problem.Message)
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
	creds, problem := policies.BasicAuthFromSecret(&s)
	if problem != nil {
		return failSecret(problem.Reason, problem.Message)
	}
	out.Credentials = creds
	out.Reason, out.Message = v1alpha1.ReasonSecretFound, fmt.Sprintf("Secret %s holds a username and password", key)
	return out
}

func failSecret(reason, msg string) secretCheck {
	return secretCheck{Failed: true, Reason: reason, Message: msg}
}

func failCA(reason, msg string) secretCheck {
	return secretCheck{Failed: true, CAFailed: true, Reason: reason, Message: msg}
}

// notFoundOr returns msg for a NotFound error and the API error otherwise (e.g. Forbidden),
// which says itself what went wrong.
func notFoundOr(err error, msg string) string {
	if apierrors.IsNotFound(err) {
		return msg
	}
	return err.Error()
}
