package policies

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
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
		for _, never := range HarborNeverRelayed {
			assert.False(t, underPrefix(concrete, never.Prefix), "%s is listed and never relayed (%s)", key, never.Prefix)
		}
		ok, _ := HarborAPIAllowed(e.Method, concrete)
		assert.True(t, ok, key)
	}
}

// README's "Harbor API relay" holds exactly the two tables in code, both ways: a row
// "| `METHOD` | `/api/v2.0/...` | purpose |" per endpoint served, and a row
// "| `prefix` | why |" per path never relayed. The failure message prints the tables to paste.
func TestREADMEListsTheHarborAPIRelayTables(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatalf("reading README.md: %v", err)
	}
	readme := string(b)
	start := strings.Index(readme, "### Harbor API relay")
	if start < 0 {
		t.Fatal(`README.md has no section "### Harbor API relay" (refusals point at it)`)
	}
	section := readme[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	served := regexp.MustCompile("(?m)^\\| `([A-Z]+)` \\| `(/api/v2\\.0/[^`]*)` \\| (.*) \\|$")
	never := regexp.MustCompile("(?m)^\\| `(/[^`]*)` \\| (.*) \\|$")

	var wantServed, wantNever strings.Builder
	wantServed.WriteString("| Method | Path | Purpose |\n|---|---|---|\n")
	code := map[string]bool{}
	for _, e := range HarborAPIEndpoints {
		row := fmt.Sprintf("| `%s` | `%s` | %s |", e.Method, e.Pattern, e.Purpose)
		wantServed.WriteString(row + "\n")
		code[row] = true
	}
	wantNever.WriteString("| Never relayed | Why |\n|---|---|\n")
	for _, n := range HarborNeverRelayed {
		row := fmt.Sprintf("| `%s` | %s |", n.Prefix, n.Why)
		wantNever.WriteString(row + "\n")
		code[row] = true
	}
	inREADME := map[string]bool{}
	for _, m := range served.FindAllString(section, -1) {
		inREADME[m] = true
	}
	for _, m := range never.FindAllString(section, -1) {
		inREADME[m] = true
	}
	var diff []string
	for row := range code {
		if !inREADME[row] {
			diff = append(diff, "missing from README: "+row)
		}
	}
	for row := range inREADME {
		if !code[row] {
			diff = append(diff, "in README, not in code: "+row)
		}
	}
	if len(diff) > 0 {
		sort.Strings(diff)
		t.Errorf("README.md's Harbor API relay tables differ from policies.HarborAPIEndpoints and HarborNeverRelayed:\n  %s\nThe tables, from code:\n%s\n%s",
			strings.Join(diff, "\n  "), wantServed.String(), wantNever.String())
	}
}
