package policies

import (
	"net"
	"net/url"
	"strings"
)

// Where a connector's credentials may go: its registry's origin, and a token realm on that
// origin or on the host its Connector names. The controller's probes and the proxy apply this
// one rule (a realm taken from a response is never trusted: GHSA-3p65-76g6-3w7r).

// SameOrigin reports whether two URLs have the same scheme, host (case-insensitively) and port,
// an omitted port standing for the scheme's default.
func SameOrigin(a, b *url.URL) bool {
	return a.Scheme == b.Scheme && strings.EqualFold(hostPort(a), hostPort(b))
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// RealmAllowed reports whether a registry's token realm may receive the connector's
// credentials: on the registry's own origin, or over https on allowedHost (the Connector's
// AnnotationTokenRealmHost, host[:port]).
func RealmAllowed(origin, realm *url.URL, allowedHost string) bool {
	if SameOrigin(origin, realm) {
		return true
	}
	return allowedHost != "" && realm.Scheme == "https" && strings.EqualFold(realm.Host, allowedHost)
}
