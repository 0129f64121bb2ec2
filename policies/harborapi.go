package policies

import (
	"fmt"
	"net/http"
	"strings"
)

// HarborAPIPrefix is the root of Harbor 2.x's REST API.
const HarborAPIPrefix = "/api/v2.0/"

// HarborAPIEndpoint is one Harbor API endpoint the connectors proxy relays with a connector's
// credentials (the forward proxy's interception of a connector's Harbor host, for harbor-cli
// and curl). Pattern is a path under /api/v2.0/ as Harbor's swagger names it: a segment in
// braces ({project_name}, {repository_name}, {reference}, ...) matches exactly one non-empty
// segment, every other segment matches itself; query strings are not part of matching.
type HarborAPIEndpoint struct {
	Method  string
	Pattern string
	Purpose string
}

// HarborAPIEndpoints is the Harbor API relay's allow-list: what harbor-cli and curl users need
// to read and manage artifacts (projects, repositories, artifacts, tags, labels, scans). Every
// other endpoint is refused, in particular anything that returns or creates a credential or a
// session (robots, users, CLI secrets, registries, scanners, OIDC, /service/token, /c/) or
// changes who may do what (members, configurations). README's "Harbor API relay" lists this
// table; a test keeps the two equal.
var HarborAPIEndpoints = []HarborAPIEndpoint{
	{http.MethodGet, "/api/v2.0/ping", "liveness (answers Pong)"},
	{http.MethodGet, "/api/v2.0/health", "health of Harbor's components"},
	{http.MethodGet, "/api/v2.0/systeminfo", "Harbor's version and general settings"},
	{http.MethodGet, "/api/v2.0/statistics", "project and repository counts"},
	{http.MethodGet, "/api/v2.0/search", "search projects and repositories (?q=)"},
	{http.MethodGet, "/api/v2.0/projects", "list projects"},
	{http.MethodHead, "/api/v2.0/projects", "check that a project name exists (?project_name=)"},
	{http.MethodGet, "/api/v2.0/projects/{project_name_or_id}", "get a project"},
	{http.MethodGet, "/api/v2.0/projects/{project_name_or_id}/summary", "a project's quota and counts"},
	{http.MethodGet, "/api/v2.0/repositories", "list the repositories the account may see"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories", "list a project's repositories"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories/{repository_name}", "get a repository"},
	{http.MethodPut, "/api/v2.0/projects/{project_name}/repositories/{repository_name}", "update a repository's description"},
	{http.MethodDelete, "/api/v2.0/projects/{project_name}/repositories/{repository_name}", "delete a repository"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts", "list artifacts (with tags, labels, scan overview)"},
	{http.MethodPost, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts", "copy an artifact here (?from=project/repository:tag or @digest)"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}", "get an artifact"},
	{http.MethodDelete, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}", "delete an artifact"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags", "list an artifact's tags"},
	{http.MethodPost, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags", "tag an artifact"},
	{http.MethodDelete, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/tags/{tag_name}", "delete a tag"},
	{http.MethodPost, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/labels", "add a label to an artifact"},
	{http.MethodDelete, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/labels/{label_id}", "remove a label from an artifact"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/accessories", "list an artifact's accessories (signatures, SBOMs)"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/additions/vulnerabilities", "an artifact's vulnerability report"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/additions/{addition}", "an artifact's build history, values.yaml, readme.md or dependencies"},
	{http.MethodPost, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/scan", "scan an artifact"},
	{http.MethodPost, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/scan/stop", "stop an artifact's scan"},
	{http.MethodGet, "/api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}/scan/{report_id}/log", "a scan's log"},
	{http.MethodGet, "/api/v2.0/labels", "list labels (?scope=g or ?scope=p&project_id=)"},
	{http.MethodGet, "/api/v2.0/labels/{label_id}", "get a label"},
}

// HarborNeverRelayed are the Harbor paths the relay refuses whatever the allow-list says: they
// return or create a credential or a session, or change who may do what. /v2/_catalog is here
// too: through the proxy the registry API serves repositories by name only, and listing goes
// through Harbor's project API, which the allow-list serves within the account's own rights.
// Each prefix matches itself and everything under it; a "*" segment matches any one segment.
// README's "Harbor API relay" lists this table; a test keeps the two equal.
var HarborNeverRelayed = []NeverRelayed{
	{"/service/token", "Harbor's registry token service: it mints tokens that outlive the pod"},
	{"/c/", "UI login, logout, OIDC login and callback: sessions"},
	{"/v2/_catalog", "the registry's catalog: repositories are served by name only"},
	{"/api/v2.0/robots", "robot accounts and their secrets"},
	{"/api/v2.0/projects/*/robots", "project robot accounts (Harbor's v1 robot API)"},
	{"/api/v2.0/users", "users, the current user, permissions, CLI secrets, passwords"},
	{"/api/v2.0/usergroups", "user groups"},
	{"/api/v2.0/ldap", "LDAP lookups and imports"},
	{"/api/v2.0/configurations", "Harbor's configuration, authentication settings included"},
	{"/api/v2.0/internalconfig", "Harbor's internal configuration"},
	{"/api/v2.0/system", "garbage collection, scan-all, CVE allow-list, OIDC ping, audit purge"},
	{"/api/v2.0/registries", "replication endpoints and their credentials"},
	{"/api/v2.0/replication", "replication policies and executions"},
	{"/api/v2.0/scanners", "scanner registrations and their credentials"},
	{"/api/v2.0/p2p", "P2P preheat providers and their credentials"},
	{"/api/v2.0/projects/*/members", "who may access a project"},
	{"/api/v2.0/projects/*/webhook", "project webhooks and their auth headers"},
	{"/api/v2.0/projects/*/preheat", "P2P preheat policies"},
}

// NeverRelayed is a Harbor path prefix the relay always refuses, and why.
type NeverRelayed struct {
	Prefix string
	Why    string
}

// HarborAPIAllowed decides whether the Harbor API relay serves a request, from its method and
// its canonical path (CanonicalPath's result; a query, if present, is ignored). When allowed,
// reason names the endpoint (for the audit log: "GET /api/v2.0/projects/{project_name}/
// repositories: list a project's repositories"); when refused, it is the message for the
// client: which endpoint, that it is not relayed, and why.
func HarborAPIAllowed(method, canonicalPath string) (allowed bool, reason string) {
	p, _, _ := strings.Cut(canonicalPath, "?")
	if _, err := CanonicalPath(p); err != nil {
		return false, err.Error()
	}
	request := method + " " + clip(p)
	for _, never := range HarborNeverRelayed {
		if underPrefix(p, never.Prefix) {
			return false, request + " is not relayed through the connectors proxy: endpoints that return or create credentials or sessions, or change who may access what, never are; see README \"Harbor API relay\""
		}
	}
	var methods []string
	for _, e := range HarborAPIEndpoints {
		if !matchPattern(e.Pattern, p) {
			continue
		}
		if e.Method == method {
			return true, e.Method + " " + e.Pattern + ": " + e.Purpose
		}
		methods = append(methods, e.Method)
	}
	if len(methods) > 0 {
		return false, fmt.Sprintf("%s is not relayed through the connectors proxy: it serves only %s on this endpoint; see README \"Harbor API relay\"", request, strings.Join(methods, ", "))
	}
	return false, request + " is not relayed through the connectors proxy: it is not among the Harbor API endpoints the proxy serves (projects, repositories, artifacts, tags, labels, scans); see README \"Harbor API relay\""
}

// matchPattern matches a path against an endpoint pattern, segment by segment.
func matchPattern(pattern, p string) bool {
	want := strings.Split(pattern, "/")
	got := strings.Split(p, "/")
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if strings.HasPrefix(want[i], "{") && strings.HasSuffix(want[i], "}") {
			if got[i] == "" {
				return false
			}
			continue
		}
		if want[i] != got[i] {
			return false
		}
	}
	return true
}

// underPrefix reports whether p is prefix or under it, segment-wise ("*" matches one segment);
// a prefix ending in "/" matches everything under it.
func underPrefix(p, prefix string) bool {
	want := strings.Split(strings.TrimSuffix(prefix, "/"), "/")
	got := strings.Split(p, "/")
	if len(got) < len(want) {
		return false
	}
	for i := range want {
		if want[i] != "*" && want[i] != got[i] {
			return false
		}
		if want[i] == "*" && got[i] == "" {
			return false
		}
	}
	return true
}
