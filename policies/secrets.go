package policies

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
)

// SecretProblem says what is wrong with a Secret a Connector references, and what to do.
type SecretProblem struct {
	Reason  string // a Connector condition reason (v1alpha1.Reason*)
	Message string
	// CA: the problem is with the CA Secret, so the registry cannot be verified at all.
	CA bool
	// Err is set when the Secret could not be read at all (an API error, not its content).
	Err error
}

func (p *SecretProblem) Error() string { return p.Message }

// Unwrap exposes the API error, if any, to errors.Is and errors.As.
func (p *SecretProblem) Unwrap() error { return p.Err }

// BasicCredentials are a registry username and password read from a kubernetes.io/basic-auth
// Secret. They format redacted, so no %v, %+v or %#v can leak the password into a log line, an
// event, a condition or an error.
type BasicCredentials struct {
	Username string
	Password string
}

// String redacts the password.
func (c BasicCredentials) String() string {
	return "{Username:" + c.Username + " Password:<redacted>}"
}

// GoString redacts the password for %#v.
func (c BasicCredentials) GoString() string { return c.String() }

// Header is the credentials as an HTTP Basic Authorization value.
func (c BasicCredentials) Header() string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(c.Username, c.Password)
	return r.Header.Get("Authorization")
}

// BasicAuthFromSecret reads username and password from a kubernetes.io/basic-auth Secret.
func BasicAuthFromSecret(s *corev1.Secret) (*BasicCredentials, *SecretProblem) {
	key := s.Namespace + "/" + s.Name
	if s.Type != corev1.SecretTypeBasicAuth {
		return nil, &SecretProblem{Reason: v1alpha1.ReasonSecretWrongType, Message: fmt.Sprintf(
			"Secret %s has type %q, want %q: recreate it with type kubernetes.io/basic-auth and keys username, password",
			key, s.Type, corev1.SecretTypeBasicAuth)}
	}
	var missing []string
	for _, k := range []string{corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey} {
		if len(s.Data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, &SecretProblem{Reason: v1alpha1.ReasonSecretMissingKey, Message: fmt.Sprintf(
			"Secret %s has no value for %s: set both username and password", key, strings.Join(missing, ", "))}
	}
	return &BasicCredentials{Username: string(s.Data[corev1.BasicAuthUsernameKey]), Password: string(s.Data[corev1.BasicAuthPasswordKey])}, nil
}

// CAPoolFromSecret returns the system roots plus every certificate in the Secret's keys ending
// .crt or .pem (the seed product's rule). Keys are read in sorted order so an error always names
// the same key.
func CAPoolFromSecret(s *corev1.Secret) (*x509.CertPool, *SecretProblem) {
	key := s.Namespace + "/" + s.Name
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
		certs, err := PEMCertificates(s.Data[k])
		if err != nil {
			return nil, &SecretProblem{CA: true, Reason: v1alpha1.ReasonCACertInvalid, Message: fmt.Sprintf(
				"CA Secret %s: key %s holds a certificate that does not parse (%v): replace it with a PEM X.509 certificate", key, k, err)}
		}
		for _, cert := range certs {
			pool.AddCert(cert)
			added++
		}
	}
	if added == 0 {
		return nil, &SecretProblem{CA: true, Reason: v1alpha1.ReasonCACertInvalid, Message: fmt.Sprintf(
			"CA Secret %s has no PEM certificate in a key ending .crt or .pem: add the registry's CA certificate (PEM) under e.g. ca.crt", key)}
	}
	return pool, nil
}

// PEMCertificates parses every CERTIFICATE block of a PEM bundle, skipping other blocks.
func PEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
}
