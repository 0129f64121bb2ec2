package v1alpha1

// Condition types on Connector.status.conditions.
const (
	// ConditionSecretReady: the Secrets the Connector references (auth and CA) exist and are
	// well-formed.
	ConditionSecretReady = "SecretReady"
	// ConditionLivenessReady: the registry answers its liveness endpoint over a verified
	// connection.
	ConditionLivenessReady = "LivenessReady"
	// ConditionAuthReady: the registry accepts the Connector's credentials.
	ConditionAuthReady = "AuthReady"
	// ConditionProxyReady: a proxy address is configured and the proxy reports ready.
	ConditionProxyReady = "ProxyReady"
	// ConditionReady: every other condition is True; otherwise it carries the first failing
	// condition's reason and message.
	ConditionReady = "Ready"
)

// Condition reasons. Each names what a person should look at.
const (
	ReasonSecretFound          = "SecretFound"             // auth Secret exists and is well-formed
	ReasonSecretOptional       = "SecretOptional"          // no auth configured: anonymous access
	ReasonSecretNotFound       = "SecretNotFound"          // auth Secret missing
	ReasonSecretWrongType      = "SecretWrongType"         // auth Secret is not kubernetes.io/basic-auth
	ReasonSecretMissingKey     = "SecretMissingKey"        // username or password key empty or absent
	ReasonSecretNamespace      = "SecretNamespaceMismatch" // secretRef.namespace differs from the Connector's
	ReasonCACertSecretNotFound = "CACertSecretNotFound"    // caCertSecretRef Secret missing
	ReasonCACertInvalid        = "CACertInvalid"           // no parsable PEM certificate in any .crt/.pem key

	ReasonAlive              = "Alive"               // liveness endpoint answered
	ReasonUnreachable        = "Unreachable"         // DNS, connect or timeout failure
	ReasonTLSUntrusted       = "TLSUntrusted"        // certificate not signed by a trusted CA
	ReasonTLSHostMismatch    = "TLSHostnameMismatch" // certificate not valid for the address's host
	ReasonUnexpectedResponse = "UnexpectedResponse"  // the registry answered with an unexpected status

	ReasonAuthenticated   = "Authenticated"   // credentials accepted
	ReasonAnonymous       = "Anonymous"       // no credentials to check
	ReasonUnauthorized    = "Unauthorized"    // credentials refused
	ReasonRealmNotTrusted = "RealmNotTrusted" // token realm on another host: credentials not sent
	ReasonNotProbed       = "NotProbed"       // an earlier check failed, so this one did not run

	ReasonProxyAvailable     = "ProxyAvailable"     // proxy readiness endpoint answered 200
	ReasonProxyNotConfigured = "ProxyNotConfigured" // the manager has no --proxy-address
	ReasonProxyUnavailable   = "ProxyUnavailable"   // proxy readiness endpoint failed
	ReasonHostNotPermitted   = "HostNotPermitted"   // address outside the interception CA's permitted domains

	ReasonReady = "Ready" // every condition True
)
