package access

// The manager's copies of Connectors' credentials. The manager reads the Secrets a Connector
// references (anywhere in the cluster) and keeps one copy per Connector in a namespace that holds
// nothing else (--credentials-namespace, connectors-credentials); the proxy reads only those
// copies, so its account needs Secret access in that one namespace and none where the product's
// keys live (connectors-system). Both sides use this file: the copy's name, its layout, how it
// is built and how it is read back.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// DefaultCredentialsNamespace is where the install has the manager keep the copies (the
// --credentials-namespace flag of both binaries): a namespace of their own, which holds nothing
// but the copies and runs no pod (config/default), so the one namespace whose Secrets the proxy
// reads and the manager writes holds no key of the product. The manager and the proxy themselves
// run in connectors-system. The RBAC markers (controller/mirror.go, proxyserver/setup.go) and
// config/ repeat this name; test/manifests fails when they differ.
const DefaultCredentialsNamespace = "connectors-credentials"

// The copy's layout.
const (
	// LabelMirror marks every copy ("true"), so the manager and an admin can select them.
	LabelMirror = "connectors.alauda.io/credentials-mirror"
	// LabelMirrorNamespace is the namespace of the copy's Connector (a namespace name is a
	// valid label value; a Connector's name may not be, so it is in AnnotationMirrorOf).
	LabelMirrorNamespace = "connectors.alauda.io/connector-namespace"
	// AnnotationMirrorOf is the copy's Connector, "<namespace>/<name>".
	AnnotationMirrorOf = "connectors.alauda.io/connector"
	// AnnotationMirrorUID and AnnotationMirrorGeneration are the uid and metadata.generation of
	// the Connector the copy was made for: a copy of an earlier Connector of the same name, or of
	// an earlier spec, is not used.
	AnnotationMirrorUID        = "connectors.alauda.io/connector-uid"
	AnnotationMirrorGeneration = "connectors.alauda.io/connector-generation"
	// AnnotationMirrorProblemReason and AnnotationMirrorProblem carry what is wrong with the
	// Connector's Secrets (a condition reason and its message) when the manager found them
	// missing or malformed; such a copy holds no data, so a deleted Secret stops being used.
	AnnotationMirrorProblemReason = "connectors.alauda.io/credentials-problem-reason"
	AnnotationMirrorProblem       = "connectors.alauda.io/credentials-problem"

	// MirrorUsernameKey, MirrorPasswordKey: the basic-auth Secret's values (absent for anonymous
	// Connectors). MirrorCAKey: the PEM certificates of caCertSecretRef (absent without one).
	MirrorUsernameKey = "username"
	MirrorPasswordKey = "password"
	MirrorCAKey       = "ca.crt"
)

// ReasonCredentialsNotCopied is the problem reason when there is no copy (yet) for the Connector
// as the reader sees it.
const ReasonCredentialsNotCopied = "CredentialsNotCopied"

// mirrorHashLen is how many hex digits of SHA-256("<namespace>/<name>") name a copy: 80 bits.
// Names cannot be confused even if two Connectors' digests ever agreed: every copy names its
// Connector in AnnotationMirrorOf, the manager never overwrites or deletes another Connector's
// copy, and LoadMirroredCredentials refuses one that is not the Connector's own.
const mirrorHashLen = 20

// MirrorName is the name of a Connector's copy: "connector-" and 20 hex digits of the SHA-256 of
// "<namespace>/<name>" (30 characters, whatever the Connector's name length).
func MirrorName(ref policies.ConnectorRef) string {
	sum := sha256.Sum256([]byte(ref.String()))
	return "connector-" + hex.EncodeToString(sum[:])[:mirrorHashLen]
}

// MirrorKey is where a Connector's copy lives.
func MirrorKey(credentialsNamespace string, ref policies.ConnectorRef) types.NamespacedName {
	return types.NamespacedName{Namespace: credentialsNamespace, Name: MirrorName(ref)}
}

// MirrorOwner returns the Connector a Secret is the copy of, if it is a copy at all.
func MirrorOwner(obj metav1.Object) (policies.ConnectorRef, bool) {
	if obj.GetLabels()[LabelMirror] != "true" {
		return policies.ConnectorRef{}, false
	}
	ns, name, ok := strings.Cut(obj.GetAnnotations()[AnnotationMirrorOf], "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return policies.ConnectorRef{}, false
	}
	return policies.ConnectorRef{Namespace: ns, Name: name}, true
}

// BuildMirror reads the Secrets c references (with a live reader) and returns the copy the
// manager keeps for it in credentialsNamespace. Secrets that are missing or malformed give a copy
// without data that carries the problem; an error means the Secrets could not be read (the API
// server's answer, e.g. Forbidden or a timeout), and the existing copy should stay as it is.
func BuildMirror(ctx context.Context, reader client.Reader, credentialsNamespace string, c *v1alpha1.Connector) (*corev1.Secret, error) {
	ref := policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: credentialsNamespace,
			Name:      MirrorName(ref),
			Labels:    map[string]string{LabelMirror: "true", LabelMirrorNamespace: c.Namespace},
			Annotations: map[string]string{
				AnnotationMirrorOf:         ref.String(),
				AnnotationMirrorUID:        string(c.UID),
				AnnotationMirrorGeneration: strconv.FormatInt(c.Generation, 10),
			},
		},
		Type: corev1.SecretTypeOpaque,
	}
	m, err := readSecrets(ctx, reader, c)
	var problem *policies.SecretProblem
	switch {
	case errors.As(err, &problem) && problem.Err == nil:
		s.Annotations[AnnotationMirrorProblemReason] = problem.Reason
		s.Annotations[AnnotationMirrorProblem] = problem.Message
		return s, nil
	case err != nil:
		return nil, err
	}
	s.Data = map[string][]byte{}
	if m.Basic != nil {
		s.Data[MirrorUsernameKey] = []byte(m.Basic.Username)
		s.Data[MirrorPasswordKey] = []byte(m.Basic.Password)
	}
	if len(m.caPEM) > 0 {
		s.Data[MirrorCAKey] = m.caPEM
	}
	return s, nil
}

// IsMirrorOf reports whether s is the copy made for this very Connector: its name, its uid and
// its current generation.
func IsMirrorOf(s *corev1.Secret, c *v1alpha1.Connector) bool {
	owner, ok := MirrorOwner(s)
	return ok && owner == (policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name}) &&
		s.Annotations[AnnotationMirrorUID] == string(c.UID) &&
		s.Annotations[AnnotationMirrorGeneration] == strconv.FormatInt(c.Generation, 10)
}

// LoadMirroredCredentials reads the manager's copy of c's credentials from credentialsNamespace,
// with reader (a live client), and returns what LoadCredentials would return from c's own
// Secrets, except that Secrets names the copy (so a watcher drops what was built from it when it
// changes). No copy, or one made for another Connector, an earlier Connector of that name or an
// earlier generation of its spec, is a *policies.SecretProblem with ReasonCredentialsNotCopied;
// a copy that records a problem with c's Secrets returns that problem.
func LoadMirroredCredentials(ctx context.Context, reader client.Reader, credentialsNamespace string, c *v1alpha1.Connector) (Credentials, error) {
	ref := policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name}
	key := MirrorKey(credentialsNamespace, ref)
	out := Credentials{Secrets: []types.NamespacedName{key}}
	notCopied := &policies.SecretProblem{Reason: ReasonCredentialsNotCopied, Message: fmt.Sprintf(
		"the manager has not copied connector %s's credentials yet; see the Connector's conditions", ref)}
	var s corev1.Secret
	if err := reader.Get(ctx, key, &s); err != nil {
		return out, secretReadError(err, notCopied)
	}
	if !IsMirrorOf(&s, c) {
		return out, notCopied
	}
	if reason := s.Annotations[AnnotationMirrorProblemReason]; reason != "" {
		return out, &policies.SecretProblem{Reason: reason, Message: s.Annotations[AnnotationMirrorProblem],
			CA: reason == v1alpha1.ReasonCACertSecretNotFound || reason == v1alpha1.ReasonCACertInvalid}
	}
	if ca, ok := s.Data[MirrorCAKey]; ok {
		pool, problem := policies.CAPoolFromSecret(&corev1.Secret{ObjectMeta: s.ObjectMeta, Data: map[string][]byte{MirrorCAKey: ca}})
		if problem != nil {
			return out, problem
		}
		out.RootCAs = pool
	} else if c.Spec.CACertSecretRef != nil {
		return out, notCopied
	}
	if c.Spec.Auth == nil || c.Spec.Auth.SecretRef == nil {
		return out, nil
	}
	user, pass := s.Data[MirrorUsernameKey], s.Data[MirrorPasswordKey]
	if len(user) == 0 || len(pass) == 0 {
		return out, notCopied
	}
	out.Basic = &policies.BasicCredentials{Username: string(user), Password: string(pass)}
	return out, nil
}
