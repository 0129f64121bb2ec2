package proxyserver

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// rewriteLocation maps a Location on the registry (relative, or absolute on its origin) to the
// connector's prefixed path on the proxy, keeping the query byte for byte (upload state). A
// Location on another host is left alone (a passed-through storage redirect).
func rewriteLocation(resp *http.Response, st *requestState) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return
	}
	if mapped, ok := mapUpstreamURL(loc, st); ok {
		resp.Header.Set("Location", mapped)
	}
}

var linkTarget = regexp.MustCompile(`<([^>]*)>`)

// rewriteLinks maps every URL in Link headers (tags and referrers pagination).
func rewriteLinks(resp *http.Response, st *requestState) {
	links := resp.Header.Values("Link")
	if len(links) == 0 {
		return
	}
	out := make([]string, 0, len(links))
	for _, l := range links {
		out = append(out, linkTarget.ReplaceAllStringFunc(l, func(m string) string {
			if mapped, ok := mapUpstreamURL(m[1:len(m)-1], st); ok {
				return "<" + mapped + ">"
			}
			return m
		}))
	}
	resp.Header["Link"] = out
}

// mapUpstreamURL turns a registry URL into the proxy's relative form. The query is cut from the
// original string, not re-encoded.
func mapUpstreamURL(raw string, st *requestState) (string, bool) {
	pathPart, query, hasQuery := strings.Cut(raw, "?")
	u, err := url.Parse(pathPart)
	if err != nil {
		return "", false
	}
	if u.IsAbs() && !st.registry.IsOrigin(u) {
		return "", false
	}
	mapped, ok := ReversePathFor(st.route.Connector, u.EscapedPath())
	if !ok {
		return "", false
	}
	if hasQuery {
		mapped += "?" + query
	}
	return mapped, true
}
