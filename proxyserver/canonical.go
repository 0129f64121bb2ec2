package proxyserver

import (
	"net/http"

	"github.com/alauda/harbor-connector/policies"
)

// canonicalPath is the first check of every listener, before any routing: a request path that
// Harbor's front would normalise into another one (dot segments, encoded separators, empty
// segments) is refused with 400, and what goes upstream is the path checked here, byte for byte
// (policies.CanonicalPath). ok is false when it has answered.
func canonicalPath(w http.ResponseWriter, r *http.Request) (path string, ok bool) {
	path, err := policies.CanonicalPath(r.URL.EscapedPath())
	if err != nil {
		writeError(w, codeNameInvalid, "", err.Error())
		return "", false
	}
	return path, true
}

// Canonical wraps a listener's handler (the reverse listener's routes, which include its health
// endpoints) so no request reaches its router with a non-canonical path: net/http's ServeMux
// would otherwise answer some of them with a redirect to the normalised path.
func Canonical(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := canonicalPath(w, r); ok {
			next.ServeHTTP(w, r)
		}
	})
}
