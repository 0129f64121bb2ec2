package proxyserver

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/alauda/harbor-connector/policies"
)

// Rewriting what names the upstream: Location and Link headers in answers, and the from= of
// cross-repository mounts in requests, so nothing ever leaves the connector it came through.

// rewriteLocation maps a Location on the registry (relative, or absolute on its origin) to the
// connector's prefixed path on the proxy, keeping the query byte for byte (upload state). A
// Location on another host is left alone (a passed-through storage redirect).
func rewriteLocation(resp *http.Response, call *upstreamCall) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return
	}
	if mapped, ok := mapUpstreamURL(loc, call); ok {
		resp.Header.Set("Location", mapped)
	}
}

var linkTarget = regexp.MustCompile(`<([^>]*)>`)

// rewriteLinks maps every URL in Link headers (tags and referrers pagination).
func rewriteLinks(resp *http.Response, call *upstreamCall) {
	links := resp.Header.Values("Link")
	if len(links) == 0 {
		return
	}
	out := make([]string, 0, len(links))
	for _, l := range links {
		out = append(out, linkTarget.ReplaceAllStringFunc(l, func(m string) string {
			if mapped, ok := mapUpstreamURL(m[1:len(m)-1], call); ok {
				return "<" + mapped + ">"
			}
			return m
		}))
	}
	resp.Header["Link"] = out
}

// mapUpstreamURL turns a registry URL into the proxy's relative form. The query is cut from the
// original string, not re-encoded.
func mapUpstreamURL(raw string, call *upstreamCall) (string, bool) {
	pathPart, query, hasQuery := strings.Cut(raw, "?")
	u, err := url.Parse(pathPart)
	if err != nil {
		return "", false
	}
	if u.IsAbs() && !call.registry.IsOrigin(u) {
		return "", false
	}
	mapped, ok := ReversePathFor(call.route.Connector, u.EscapedPath())
	if !ok {
		return "", false
	}
	if hasQuery {
		mapped += "?" + query
	}
	return mapped, true
}

// mountQuery rewrites a cross-repository mount's from= into the registry's repository name when
// it names a repository of the same connector; otherwise it drops mount and from, so the registry
// answers 202 and the client uploads the blob itself. A mount can never reach another
// connector's repositories.
func mountQuery(r *http.Request, route Route, native bool) (query, from string) {
	if route.Kind != KindUpload || r.Method != http.MethodPost || r.URL.RawQuery == "" {
		return r.URL.RawQuery, ""
	}
	q := r.URL.Query()
	rawFrom := q.Get("from")
	if q.Get("mount") == "" || rawFrom == "" {
		return r.URL.RawQuery, ""
	}
	if native {
		return r.URL.RawQuery, rawFrom
	}
	ref, repo, ok := policies.ParseProxyPath(rawFrom)
	if ok && ref == route.Connector {
		q.Set("from", repo)
		return q.Encode(), repo
	}
	q.Del("mount")
	q.Del("from")
	return q.Encode(), ""
}
