package controller

import (
	"context"
	"errors"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
)

// secretCheck is the SecretReady outcome of reading the Secrets a Connector references.
type secretCheck struct {
	access.Credentials
	ProbeResult
	// CAFailed: the failing Secret is the CA one, so the registry cannot be verified at all.
	CAFailed bool
}

// readSecrets reads the auth and CA Secrets with a live read (the manager watches Secrets by
// metadata only, so their data is never held in the informer cache).
func readSecrets(ctx context.Context, reader client.Reader, c *v1alpha1.Connector) secretCheck {
	creds, err := access.LoadCredentials(ctx, reader, c)
	var problem *policies.SecretProblem
	switch {
	case errors.As(err, &problem):
		// A readable CA still verifies the liveness probe when only the auth Secret fails.
		return secretCheck{Credentials: access.Credentials{RootCAs: creds.RootCAs},
			ProbeResult: ProbeResult{Reason: problem.Reason, Message: problem.Message}, CAFailed: problem.CA}
	case err != nil:
		return secretCheck{ProbeResult: ProbeResult{Reason: v1alpha1.ReasonSecretNotFound, Message: err.Error()}}
	case creds.Basic == nil:
		return secretCheck{Credentials: creds, ProbeResult: ProbeResult{OK: true, Reason: v1alpha1.ReasonSecretOptional,
			Message: "no spec.auth: the registry is accessed anonymously"}}
	}
	key := creds.Secrets[len(creds.Secrets)-1]
	return secretCheck{Credentials: creds, ProbeResult: ProbeResult{OK: true, Reason: v1alpha1.ReasonSecretFound,
		Message: fmt.Sprintf("Secret %s holds a username and password", key)}}
}
