package proxyserver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The node pull listener and every router Canonical wraps answer a non-canonical path with 400
// before anything else: the node listener never relays it, and net/http's ServeMux never gets to
// redirect it to its cleaned form.
func TestListenersRefuseNonCanonicalPathsFirst(t *testing.T) {
	reached := false
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })
	node := &NodeForwarder{Upstream: &url.URL{Scheme: "https", Host: "central.invalid"}, TokenFile: "/nonexistent", CAFile: "/nonexistent"}
	for name, h := range map[string]http.Handler{"routes": Canonical(next), "node listener": node} {
		for _, target := range []string{
			"/v2/namespaces/team-a/connectors/harbor/team/../../../../service/token",
			"/v2/namespaces/team-a/connectors/harbor/team/%2e%2e/app/manifests/v1",
			"/v2/namespaces/team-a/connectors/harbor/team%2Fapp/manifests/v1",
			"/v2//namespaces/team-a/connectors/harbor/team/app/manifests/v1",
			"/healthz/..",
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
			assert.Equal(t, http.StatusBadRequest, rec.Code, "%s %s", name, target)
			assert.Contains(t, rec.Body.String(), "NAME_INVALID", "%s %s", name, target)
		}
	}
	assert.False(t, reached, "a non-canonical path reached the router")

	rec := httptest.NewRecorder()
	Canonical(next).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/namespaces/team-a/connectors/harbor/team/app/manifests/v1", nil))
	assert.True(t, reached, "a canonical path passes")
}
