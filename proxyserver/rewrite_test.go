package proxyserver

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// rewriteCall is what the response rewriting reads of a request: the connector it was routed
// to and that connector's registry, at https://harbor.example.com.
func rewriteCall(t *testing.T) *upstreamCall {
	t.Helper()
	reg := upstream.NewRegistry(upstream.Config{Ref: testConnector, Origin: &url.URL{Scheme: "https", Host: "harbor.example.com"}})
	t.Cleanup(reg.Close)
	return &upstreamCall{route: Route{Connector: testConnector, Repository: "team/app", Kind: KindUpload}, registry: reg}
}

const (
	proxied = "/v2/namespaces/team-a/connectors/harbor"
	// An upload's opaque state, as Harbor and distribution write it: escapes, '+', '=' and an
	// order of parameters the proxy must not normalise.
	uploadQuery = "_state=ab%2Bc%2Fd%3D%3D&digest=sha256%3A0123&b=1&a=2"
)

func TestRewriteLocation(t *testing.T) {
	for _, tc := range []struct {
		name, location, want string
	}{
		{"relative upload location", "/v2/team/app/blobs/uploads/" + testUploadID + "?" + uploadQuery,
			proxied + "/team/app/blobs/uploads/" + testUploadID + "?" + uploadQuery},
		{"relative, no query", "/v2/team/app/blobs/" + testDigest, proxied + "/team/app/blobs/" + testDigest},
		{"relative, empty query kept", "/v2/team/app/blobs/uploads/x?", proxied + "/team/app/blobs/uploads/x?"},
		{"absolute on the registry's origin", "https://harbor.example.com/v2/team/app/blobs/uploads/" + testUploadID + "?" + uploadQuery,
			proxied + "/team/app/blobs/uploads/" + testUploadID + "?" + uploadQuery},
		{"absolute with the default port", "https://harbor.example.com:443/v2/team/app/blobs/uploads/x", proxied + "/team/app/blobs/uploads/x"},
		{"absolute, host in another case", "https://HARBOR.Example.com/v2/team/app/manifests/v1", proxied + "/team/app/manifests/v1"},
		{"escaped path kept escaped", "/v2/team/app/blobs/uploads/ab%2Bcd", proxied + "/team/app/blobs/uploads/ab%2Bcd"},
		{"nested repository", "/v2/team/sub/app/manifests/" + testDigest, proxied + "/team/sub/app/manifests/" + testDigest},
		// Left alone: not the registry's origin (a passed-through storage redirect), or not a
		// registry API path.
		{"object storage", "https://s3.example.com/bucket/blob?X-Amz-Signature=abc%2B", "https://s3.example.com/bucket/blob?X-Amz-Signature=abc%2B"},
		{"same host over http", "http://harbor.example.com/v2/team/app/blobs/x", "http://harbor.example.com/v2/team/app/blobs/x"},
		{"same host on another port", "https://harbor.example.com:8443/v2/team/app/blobs/x", "https://harbor.example.com:8443/v2/team/app/blobs/x"},
		{"a subdomain of the registry", "https://cdn.harbor.example.com/v2/team/app/blobs/x", "https://cdn.harbor.example.com/v2/team/app/blobs/x"},
		{"outside /v2/", "/api/v2.0/projects", "/api/v2.0/projects"},
		{"the base", "/v2/", "/v2/"},
		{"absolute outside /v2/", "https://harbor.example.com/c/login", "https://harbor.example.com/c/login"},
		{"unparsable", "/v2/team/app/blobs/%zz", "/v2/team/app/blobs/%zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{Header: http.Header{"Location": {tc.location}}}
			rewriteLocation(resp, rewriteCall(t))
			assert.Equal(t, []string{tc.want}, resp.Header.Values("Location"))
		})
	}
	t.Run("no Location", func(t *testing.T) {
		resp := &http.Response{Header: http.Header{}}
		rewriteLocation(resp, rewriteCall(t))
		assert.NotContains(t, resp.Header, "Location", "no header is added")
	})
}

func TestRewriteLinks(t *testing.T) {
	for _, tc := range []struct {
		name       string
		links      []string
		want       []string
		wantAbsent bool
	}{
		{name: "tags pagination",
			links: []string{`</v2/team/app/tags/list?n=100&last=v1.2>; rel="next"`},
			want:  []string{`<` + proxied + `/team/app/tags/list?n=100&last=v1.2>; rel="next"`}},
		{name: "referrers pagination, absolute on the origin",
			links: []string{`<https://harbor.example.com/v2/team/app/referrers/` + testDigest + `?n=10&last=b%3Dc>; rel="next"`},
			want:  []string{`<` + proxied + `/team/app/referrers/` + testDigest + `?n=10&last=b%3Dc>; rel="next"`}},
		{name: "several links in one value, other hosts left alone",
			links: []string{`</v2/team/app/tags/list?last=a>; rel="next", <https://docs.example.com/tags>; rel="help", </v2/team/app/tags/list>; rel="first"`},
			want:  []string{`<` + proxied + `/team/app/tags/list?last=a>; rel="next", <https://docs.example.com/tags>; rel="help", <` + proxied + `/team/app/tags/list>; rel="first"`}},
		{name: "several Link headers, each rewritten, order kept",
			links: []string{`</v2/team/app/tags/list?last=a>; rel="next"`, `</api/v2.0/projects>; rel="other"`, `</v2/team/app/tags/list>; rel="first"`},
			want:  []string{`<` + proxied + `/team/app/tags/list?last=a>; rel="next"`, `</api/v2.0/projects>; rel="other"`, `<` + proxied + `/team/app/tags/list>; rel="first"`}},
		{name: "parameters outside the brackets untouched",
			links: []string{`</v2/team/app/tags/list?n=2>;rel=next;title="/v2/team/app"`},
			want:  []string{`<` + proxied + `/team/app/tags/list?n=2>;rel=next;title="/v2/team/app"`}},
		{name: "another origin",
			links: []string{`<http://harbor.example.com/v2/team/app/tags/list?last=a>; rel="next"`},
			want:  []string{`<http://harbor.example.com/v2/team/app/tags/list?last=a>; rel="next"`}},
		{name: "no Link", wantAbsent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{Header: http.Header{}}
			for _, l := range tc.links {
				resp.Header.Add("Link", l)
			}
			rewriteLinks(resp, rewriteCall(t))
			if tc.wantAbsent {
				assert.NotContains(t, resp.Header, "Link", "no header is added")
				return
			}
			assert.Equal(t, tc.want, resp.Header.Values("Link"))
		})
	}
}

// Nothing a caller authenticates to the proxy with goes upstream: its token, a pod's token a
// node listener relayed, proxy credentials, cookies. The registry gets the connector's
// credential instead (rewriteRequest, the Harbor API relay).
func TestDropCallerCredentials(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie", "Connectors-Pod-Token", "Accept"} {
		h.Set(k, "x")
	}
	dropCallerCredentials(h)
	assert.Equal(t, http.Header{"Accept": {"x"}}, h)
}
