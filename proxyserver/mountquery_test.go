package proxyserver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mountQuery decides what a cross-repository mount (POST .../blobs/uploads/?mount=<digest>&from=
// <repository>) sends to the registry: a mount from the same connector's repository is kept with
// from= in the registry's own name; a mount from anything else is dropped, so the registry starts
// an ordinary upload and the client pushes the blob, never reading another connector's data.
func TestMountQuery(t *testing.T) {
	const (
		uploads = reversePrefix + "team/app/blobs/uploads/"
		mount   = "mount=" + testDigest
	)
	upload := Route{Connector: testConnector, Repository: "team/app", Kind: KindUpload}
	for _, tc := range []struct {
		name   string
		method string
		target string // request path and query
		route  Route
		native bool
		// wantRaw: the query goes out byte for byte as the client sent it. Otherwise want is the
		// outbound query's parameters.
		wantRaw  bool
		want     url.Values
		wantFrom string
	}{
		{name: "same connector: from= becomes the registry's repository",
			method: http.MethodPost, target: uploads + "?" + mount + "&from=namespaces/team-a/connectors/harbor/team/base", route: upload,
			want: url.Values{"mount": {testDigest}, "from": {"team/base"}}, wantFrom: "team/base"},
		{name: "same connector, from= escaped",
			method: http.MethodPost, target: uploads + "?" + mount + "&from=namespaces%2Fteam-a%2Fconnectors%2Fharbor%2Fteam%2Fsub%2Fbase", route: upload,
			want: url.Values{"mount": {testDigest}, "from": {"team/sub/base"}}, wantFrom: "team/sub/base"},
		{name: "same connector, other parameters kept",
			method: http.MethodPost, target: uploads + "?from=namespaces/team-a/connectors/harbor/base&" + mount + "&origin=x", route: upload,
			want: url.Values{"mount": {testDigest}, "from": {"base"}, "origin": {"x"}}, wantFrom: "base"},
		{name: "another connector in the namespace: mount and from dropped",
			method: http.MethodPost, target: uploads + "?" + mount + "&from=namespaces/team-a/connectors/other/team/base", route: upload,
			want: url.Values{}, wantFrom: ""},
		{name: "the same name in another namespace: dropped",
			method: http.MethodPost, target: uploads + "?" + mount + "&from=namespaces/team-b/connectors/harbor/team/base", route: upload,
			want: url.Values{}, wantFrom: ""},
		{name: "another connector, other parameters kept",
			method: http.MethodPost, target: uploads + "?" + mount + "&from=namespaces/team-b/connectors/harbor/team/base&origin=x", route: upload,
			want: url.Values{"origin": {"x"}}, wantFrom: ""},
		{name: "a from= that is no proxy path (the registry's own name): dropped",
			method: http.MethodPost, target: uploads + "?" + mount + "&from=team/base", route: upload,
			want: url.Values{}, wantFrom: ""},
		{name: "a from= naming a connector but no repository: dropped",
			method: http.MethodPost, target: uploads + "?" + mount + "&from=namespaces/team-a/connectors/harbor", route: upload,
			want: url.Values{}, wantFrom: ""},
		// Forward mode: the client already uses the registry's names, and the connector is the
		// intercepted host itself.
		{name: "native: passes through",
			method: http.MethodPost, target: "/v2/team/app/blobs/uploads/?" + mount + "&from=team/base", route: Route{Repository: "team/app", Kind: KindUpload}, native: true,
			wantRaw: true, wantFrom: "team/base"},
		{name: "native: a proxy-looking from= is a repository name like any other",
			method: http.MethodPost, target: "/v2/team/app/blobs/uploads/?" + mount + "&from=namespaces/team-a/connectors/other/x", route: Route{Repository: "team/app", Kind: KindUpload}, native: true,
			wantRaw: true, wantFrom: "namespaces/team-a/connectors/other/x"},
		// Untouched: not a mount.
		{name: "POST without a query", method: http.MethodPost, target: uploads, route: upload, wantRaw: true},
		{name: "mount without from", method: http.MethodPost, target: uploads + "?" + mount, route: upload, wantRaw: true},
		{name: "from without mount", method: http.MethodPost, target: uploads + "?from=namespaces/team-b/connectors/harbor/x", route: upload, wantRaw: true},
		{name: "monolithic upload", method: http.MethodPost, target: uploads + "?digest=sha256%3A0123", route: upload, wantRaw: true},
		{name: "GET of an upload", method: http.MethodGet, target: uploads + testUploadID + "?" + mount + "&from=namespaces/team-b/connectors/harbor/x",
			route: Route{Connector: testConnector, Repository: "team/app", Kind: KindUpload, Rest: testUploadID}, wantRaw: true},
		{name: "PATCH of an upload", method: http.MethodPatch, target: uploads + testUploadID + "?_state=ab%2Bc&" + mount + "&from=namespaces/team-b/connectors/harbor/x",
			route: Route{Connector: testConnector, Repository: "team/app", Kind: KindUpload, Rest: testUploadID}, wantRaw: true},
		{name: "PUT of an upload", method: http.MethodPut, target: uploads + testUploadID + "?_state=ab%2Bc&digest=" + testDigest + "&" + mount + "&from=team/base",
			route: Route{Connector: testConnector, Repository: "team/app", Kind: KindUpload, Rest: testUploadID}, wantRaw: true},
		{name: "POST to a manifest", method: http.MethodPost, target: reversePrefix + "team/app/manifests/v1?" + mount + "&from=namespaces/team-b/connectors/harbor/x",
			route: Route{Connector: testConnector, Repository: "team/app", Kind: KindManifest, Rest: "v1"}, wantRaw: true},
		{name: "POST to tags/list", method: http.MethodPost, target: reversePrefix + "team/app/tags/list?" + mount + "&from=namespaces/team-b/connectors/harbor/x",
			route: Route{Connector: testConnector, Repository: "team/app", Kind: KindTags}, wantRaw: true},
		{name: "GET of a blob", method: http.MethodGet, target: reversePrefix + "team/app/blobs/" + testDigest + "?" + mount + "&from=namespaces/team-b/connectors/harbor/x",
			route: Route{Connector: testConnector, Repository: "team/app", Kind: KindBlob, Rest: testDigest}, wantRaw: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, nil)
			query, from := mountQuery(r, tc.route, tc.native)
			assert.Equal(t, tc.wantFrom, from, "from")
			if tc.wantRaw {
				assert.Equal(t, r.URL.RawQuery, query, "the query goes out as sent")
				return
			}
			got, err := url.ParseQuery(query)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got, "outbound query %q", query)
		})
	}
}
