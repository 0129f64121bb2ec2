package policies

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHarborAPIAllowed(t *testing.T) {
	const repo = "/api/v2.0/projects/team/repositories/app"
	const nested = "/api/v2.0/projects/team/repositories/sub%252Fapp"
	allowed := []struct{ method, path string }{
		{"GET", "/api/v2.0/ping"},
		{"GET", "/api/v2.0/health"},
		{"GET", "/api/v2.0/systeminfo"},
		{"GET", "/api/v2.0/statistics"},
		{"GET", "/api/v2.0/search?q=app"},
		{"GET", "/api/v2.0/projects"},
		{"HEAD", "/api/v2.0/projects?project_name=team"},
		{"GET", "/api/v2.0/projects/team"},
		{"GET", "/api/v2.0/projects/7/summary"},
		{"GET", "/api/v2.0/repositories"},
		{"GET", "/api/v2.0/projects/team/repositories"},
		{"GET", repo},
		{"PUT", repo},
		{"DELETE", nested},
		{"GET", repo + "/artifacts?with_scan_overview=true"},
		{"POST", nested + "/artifacts?from=team/base:v1"},
		{"GET", repo + "/artifacts/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{"DELETE", repo + "/artifacts/v1"},
		{"GET", repo + "/artifacts/v1/tags"},
		{"POST", nested + "/artifacts/v1/tags"},
		{"DELETE", repo + "/artifacts/v1/tags/v1"},
		{"POST", repo + "/artifacts/v1/labels"},
		{"DELETE", repo + "/artifacts/v1/labels/3"},
		{"GET", repo + "/artifacts/v1/accessories"},
		{"GET", repo + "/artifacts/v1/additions/vulnerabilities"},
		{"GET", repo + "/artifacts/v1/additions/build_history"},
		{"GET", repo + "/artifacts/v1/additions/values.yaml"},
		{"POST", repo + "/artifacts/v1/scan"},
		{"POST", repo + "/artifacts/v1/scan/stop"},
		{"GET", repo + "/artifacts/v1/scan/8d9e/log"},
		{"GET", "/api/v2.0/labels?scope=g"},
		{"GET", "/api/v2.0/labels/3"},
	}
	for _, tc := range allowed {
		ok, reason := HarborAPIAllowed(tc.method, tc.path)
		assert.True(t, ok, "%s %s: %s", tc.method, tc.path, reason)
		assert.True(t, strings.HasPrefix(reason, tc.method+" /api/v2.0/"), "names the endpoint: %s", reason)
	}

	credentials := []struct{ method, path string }{
		{"POST", "/api/v2.0/robots"},
		{"GET", "/api/v2.0/robots"},
		{"PATCH", "/api/v2.0/robots/3"},
		{"POST", "/api/v2.0/projects/team/robots"},
		{"GET", "/api/v2.0/users/current"},
		{"GET", "/api/v2.0/users/current/permissions"},
		{"PUT", "/api/v2.0/users/5/cli_secret"},
		{"GET", "/api/v2.0/users/search?username=a"},
		{"GET", "/api/v2.0/usergroups"},
		{"GET", "/service/token?service=harbor-registry&scope=repository:team/app:pull,push"},
		{"POST", "/c/login"},
		{"GET", "/c/oidc/login"},
		{"GET", "/v2/_catalog"},
		{"GET", "/api/v2.0/registries"},
		{"POST", "/api/v2.0/registries/ping"},
		{"GET", "/api/v2.0/replication/policies"},
		{"GET", "/api/v2.0/replication/executions"},
		{"GET", "/api/v2.0/configurations"},
		{"GET", "/api/v2.0/internalconfig"},
		{"POST", "/api/v2.0/ldap/ping"},
		{"GET", "/api/v2.0/system/gc"},
		{"POST", "/api/v2.0/system/oidc/ping"},
		{"GET", "/api/v2.0/scanners"},
		{"GET", "/api/v2.0/p2p/preheat/instances"},
		{"POST", "/api/v2.0/projects/team/members"},
		{"GET", "/api/v2.0/projects/team/webhook/policies"},
		{"GET", "/api/v2.0/projects/team/preheat/policies"},
	}
	for _, tc := range credentials {
		ok, reason := HarborAPIAllowed(tc.method, tc.path)
		assert.False(t, ok, "%s %s", tc.method, tc.path)
		assert.Contains(t, reason, "credentials or sessions", "%s %s", tc.method, tc.path)
	}

	refused := []struct{ method, path, says string }{
		{"DELETE", "/api/v2.0/projects/team", "serves only GET"},
		{"POST", "/api/v2.0/projects", "serves only GET, HEAD"},
		{"PATCH", repo, "serves only GET, PUT, DELETE"},
		{"get", "/api/v2.0/ping", "serves only GET"},
		{"GET", "/api/v2.0/projects/team/scanner", "not among the Harbor API endpoints"},
		{"GET", "/api/v2.0/projects/team/immutabletagrules", "not among"},
		{"GET", "/api/v2.0/audit-logs", "not among"},
		{"GET", "/api/v2.0/service/token", "not among"},
		{"GET", "/api/v2.0/systeminfo/volumes", "not among"},
		{"GET", "/api/v2.0/projects/", "not among"},
		{"GET", "/api/v2.0/ping/", "not among"},
		{"GET", "/API/v2.0/ping", "not among"},
		{"GET", "/api/v2.0", "not among"},
		{"GET", "/", "not among"},
		{"GET", "/harbor/projects", "not among"},
		// Not canonical: refused before matching, with the canonicaliser's message.
		{"GET", "/api/v2.0/../../service/token", "dot segment"},
		{"GET", "/api/v2.0/projects/../users/current", "dot segment"},
		{"GET", "/api/v2.0/%2e%2e/%2e%2e/service/token", "percent-encoded '.'"},
		{"GET", "/api/v2.0/projects/team/repositories/app%2F..%2F..%2F..%2Fusers", "percent-encoded '/'"},
		{"GET", "/api/v2.0//projects", "empty segment"},
	}
	for _, tc := range refused {
		ok, reason := HarborAPIAllowed(tc.method, tc.path)
		assert.False(t, ok, "%s %s", tc.method, tc.path)
		assert.Contains(t, reason, tc.says, "%s %s", tc.method, tc.path)
	}
}

func TestHarborAPIRefusalMessage(t *testing.T) {
	_, reason := HarborAPIAllowed("POST", "/api/v2.0/robots")
	assert.Equal(t, `POST /api/v2.0/robots is not relayed through the connectors proxy: endpoints that return or create credentials or sessions, or change who may access what, never are; see README "Harbor API relay"`, reason)
}

// The table is well formed: methods are HTTP methods, patterns are canonical paths under
// /api/v2.0/ with whole-segment parameters, nothing is listed twice, and nothing listed is
// also never relayed.
func TestHarborAPIEndpointsTable(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range HarborAPIEndpoints {
		key := e.Method + " " + e.Pattern
		assert.False(t, seen[key], "listed twice: %s", key)
		seen[key] = true
		assert.Contains(t, []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete}, e.Method, key)
		assert.True(t, strings.HasPrefix(e.Pattern, HarborAPIPrefix), key)
		assert.NotEmpty(t, e.Purpose, key)
		concrete := strings.NewReplacer("{", "x", "}", "x").Replace(e.Pattern)
		_, err := CanonicalPath(concrete)
		assert.NoError(t, err, key)
		for _, seg := range strings.Split(e.Pattern, "/") {
			if strings.ContainsAny(seg, "{}") {
				assert.True(t, strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}"), "a parameter is a whole segment: %s", key)
			}
		}
		for _, prefix := range neverRelayed {
			assert.False(t, underPrefix(concrete, prefix), "%s is listed and never relayed (%s)", key, prefix)
		}
		ok, _ := HarborAPIAllowed(e.Method, concrete)
		assert.True(t, ok, key)
	}
}

// README's "Harbor API relay" lists every endpoint the relay serves, as a table row
// "| `METHOD` | `/api/v2.0/...` | purpose |". The failure message prints the table to paste.
func TestREADMEListsEveryHarborAPIEndpoint(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatalf("reading README.md: %v", err)
	}
	readme := string(b)
	var table strings.Builder
	table.WriteString("| Method | Path | Purpose |\n|---|---|---|\n")
	var missing []string
	for _, e := range HarborAPIEndpoints {
		row := fmt.Sprintf("| `%s` | `%s` | %s |", e.Method, e.Pattern, e.Purpose)
		table.WriteString(row + "\n")
		if !strings.Contains(readme, fmt.Sprintf("| `%s` | `%s` |", e.Method, e.Pattern)) {
			missing = append(missing, e.Method+" "+e.Pattern)
		}
	}
	if !strings.Contains(readme, "Harbor API relay") {
		missing = append(missing, `a section named "Harbor API relay" (refusals point at it)`)
	}
	if len(missing) > 0 {
		t.Errorf("README.md does not list %d Harbor API relay entries:\n  %s\nThe table, from policies.HarborAPIEndpoints:\n%s",
			len(missing), strings.Join(missing, "\n  "), table.String())
	}
}
