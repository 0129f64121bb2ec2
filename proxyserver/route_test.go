package proxyserver

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/policies"
)

const (
	testDigest    = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testUploadID  = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	reversePrefix = "/v2/namespaces/team-a/connectors/harbor/"
)

var testConnector = policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}

// routeCase is a registry path below the connector prefix (reverse mode) or below /v2/ (native
// mode), and the route both modes parse it into.
type routeCase struct {
	name       string
	path       string
	repository string
	kind       Kind
	rest       string
}

// The endpoints the proxy serves, as both modes see them after their prefix. The endpoint is
// matched from the end of the path, so repository components may be the API's own words.
var validRouteCases = []routeCase{
	{"manifest by tag", "team/app/manifests/v1", "team/app", KindManifest, "v1"},
	{"manifest by latest", "team/app/manifests/latest", "team/app", KindManifest, "latest"},
	{"manifest by tag with dots, dashes, underscores", "team/app/manifests/v1.2.3-rc_1", "team/app", KindManifest, "v1.2.3-rc_1"},
	{"manifest by 128-character tag", "team/app/manifests/" + strings.Repeat("t", 128), "team/app", KindManifest, strings.Repeat("t", 128)},
	{"manifest by digest", "team/app/manifests/" + testDigest, "team/app", KindManifest, testDigest},
	{"blob", "team/app/blobs/" + testDigest, "team/app", KindBlob, testDigest},
	{"upload start (no ID)", "team/app/blobs/uploads/", "team/app", KindUpload, ""},
	{"upload with UUID", "team/app/blobs/uploads/" + testUploadID, "team/app", KindUpload, testUploadID},
	{"upload with opaque state", "team/app/blobs/uploads/c3RhdGU_x.y=", "team/app", KindUpload, "c3RhdGU_x.y="},
	{"tags list", "team/app/tags/list", "team/app", KindTags, ""},
	{"referrers", "team/app/referrers/" + testDigest, "team/app", KindReferrers, testDigest},
	{"single-component repository", "app/manifests/v1", "app", KindManifest, "v1"},
	{"nested repository", "team/sub/deep/app/manifests/v1", "team/sub/deep/app", KindManifest, "v1"},
	{"nested repository, upload", "team/sub/deep/app/blobs/uploads/", "team/sub/deep/app", KindUpload, ""},
	{"repository with separators", "team_x/my-app.v2/tags/list", "team_x/my-app.v2", KindTags, ""},
	// API words as repository components.
	{"repository named blobs", "team/blobs/blobs/" + testDigest, "team/blobs", KindBlob, testDigest},
	{"repository named manifests", "manifests/manifests/v1", "manifests", KindManifest, "v1"},
	{"repository components blobs/manifests", "team/blobs/manifests/manifests/v1", "team/blobs/manifests", KindManifest, "v1"},
	{"repository named uploads, upload", "uploads/blobs/uploads/", "uploads", KindUpload, ""},
	{"repository blobs/uploads, upload", "blobs/uploads/blobs/uploads/" + testUploadID, "blobs/uploads", KindUpload, testUploadID},
	{"repository tags/list, tags", "tags/list/tags/list", "tags/list", KindTags, ""},
	{"repository named referrers", "team/referrers/referrers/" + testDigest, "team/referrers", KindReferrers, testDigest},
	{"repository ending in blobs, manifest", "team/blobs/manifests/v1", "team/blobs", KindManifest, "v1"},
	{"tag named like an endpoint", "team/app/manifests/blobs", "team/app", KindManifest, "blobs"},
	{"repository that looks like a proxy path", "namespaces/a/connectors/b/app/manifests/v1", "namespaces/a/connectors/b/app", KindManifest, "v1"},
}

// routeErrorCase is a path below the prefix both modes refuse, with the OCI error code.
type routeErrorCase struct {
	name string
	path string
	code string
}

var invalidRouteCases = []routeErrorCase{
	{"catalog", "_catalog", codeUnsupported},
	{"repository only", "team/app", codeUnsupported},
	{"manifests without repository or reference", "manifests/v1", codeUnsupported},
	{"upload without repository", "blobs/uploads/", codeUnsupported},
	{"tags without list", "team/app/tags", codeUnsupported},
	{"tags/list with more", "team/app/tags/list/x", codeUnsupported},
	{"upload with more after the ID", "team/app/blobs/uploads/" + testUploadID + "/x", codeUnsupported},
	{"unknown endpoint", "team/app/other/v1", codeUnsupported},
	{"empty manifest reference", "team/app/manifests/", codeManifestInvalid},
	{"manifest reference neither tag nor digest", "team/app/manifests/v1!", codeManifestInvalid},
	{"manifest tag starting with a dot", "team/app/manifests/.v1", codeManifestInvalid},
	{"manifest tag of 129 characters", "team/app/manifests/" + strings.Repeat("t", 129), codeManifestInvalid},
	{"manifest digest too short", "team/app/manifests/sha256:0123", codeManifestInvalid},
	{"blob by tag", "team/app/blobs/v1", codeDigestInvalid},
	{"blob digest too short", "team/app/blobs/sha256:0123", codeDigestInvalid},
	{"blob digest of unknown algorithm", "team/app/blobs/md5:0123456789abcdef0123456789abcdef", codeDigestInvalid},
	{"empty blob digest", "team/app/blobs/", codeDigestInvalid},
	// The registries' router answers uploads only with the trailing slash; without it the path
	// is a blob named "uploads".
	{"upload start without trailing slash", "team/app/blobs/uploads", codeDigestInvalid},
	{"referrers by tag", "team/app/referrers/v1", codeDigestInvalid},
	{"upload ID with a space", "team/app/blobs/uploads/bad id", codeBlobUploadInvalid},
	{"upload ID with a colon", "team/app/blobs/uploads/bad:id", codeBlobUploadInvalid},
	{"upload ID over 512 characters", "team/app/blobs/uploads/" + strings.Repeat("a", 513), codeBlobUploadInvalid},
	{"empty repository", "/manifests/v1", codeNameInvalid},
	{"upper-case repository", "Team/App/manifests/v1", codeNameInvalid},
	{"empty repository component", "team//app/manifests/v1", codeNameInvalid},
	{"repository component ending in a separator", "team/app-/manifests/v1", codeNameInvalid},
	{"repository with a tag-like component", "team/app:v1/manifests/v1", codeNameInvalid},
}

func routeCode(t *testing.T, err error) string {
	t.Helper()
	var re *routeError
	require.True(t, errors.As(err, &re), "a routeError, got %T: %v", err, err)
	assert.NotEmpty(t, re.message)
	_, known := statusFor[re.code]
	assert.True(t, known, "code %s has an HTTP status", re.code)
	return re.code
}

func TestParseReversePath(t *testing.T) {
	for _, tc := range validRouteCases {
		t.Run(tc.name, func(t *testing.T) {
			path := reversePrefix + tc.path
			route, err := ParseReversePath(path)
			require.NoError(t, err)
			assert.Equal(t, Route{Connector: testConnector, Repository: tc.repository, Kind: tc.kind, Rest: tc.rest}, route)
			assert.Equal(t, "/v2/"+tc.path, route.UpstreamPath(), "the registry sees the path without the connector prefix")
			back, ok := ReversePathFor(route.Connector, route.UpstreamPath())
			require.True(t, ok)
			assert.Equal(t, path, back, "the upstream path maps back to the client's")
		})
	}
	t.Run("other connector names", func(t *testing.T) {
		route, err := ParseReversePath("/v2/namespaces/kube-public/connectors/my.hub-2/library/nginx/manifests/1.27")
		require.NoError(t, err)
		assert.Equal(t, Route{Connector: policies.ConnectorRef{Namespace: "kube-public", Name: "my.hub-2"}, Repository: "library/nginx", Kind: KindManifest, Rest: "1.27"}, route)
	})
}

func TestParseReversePathRefusals(t *testing.T) {
	for _, tc := range invalidRouteCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseReversePath(reversePrefix + tc.path)
			require.Error(t, err)
			assert.Equal(t, tc.code, routeCode(t, err))
		})
	}
	// The fits-exactly name: the client sees <prefix>/<repository>, 255 characters at most.
	prefixed := len(policies.ProxyPath(testConnector)) + 1
	fits := "team/" + strings.Repeat("a", 255-prefixed-len("team/"))
	for _, tc := range []routeErrorCase{
		{"not under /v2/", "/v1/namespaces/team-a/connectors/harbor/team/app/manifests/v1", codeNameInvalid},
		{"no leading slash", "v2/namespaces/team-a/connectors/harbor/team/app/manifests/v1", codeNameInvalid},
		{"native path", "/v2/team/app/manifests/v1", codeNameInvalid},
		{"catalog at the root", "/v2/_catalog", codeNameInvalid},
		{"base", "/v2/", codeNameInvalid},
		{"prefix only", "/v2/namespaces/team-a/connectors/harbor", codeNameInvalid},
		{"prefix with slash only", "/v2/namespaces/team-a/connectors/harbor/", codeNameInvalid},
		{"empty namespace", "/v2/namespaces//connectors/harbor/team/app/manifests/v1", codeNameInvalid},
		{"empty connector", "/v2/namespaces/team-a/connectors//team/app/manifests/v1", codeNameInvalid},
		{"misspelled prefix", "/v2/namespace/team-a/connectors/harbor/team/app/manifests/v1", codeNameInvalid},
		{"prefixed name over 255 characters", reversePrefix + fits + "b/manifests/v1", codeNameInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseReversePath(tc.path)
			require.Error(t, err)
			assert.Equal(t, tc.code, routeCode(t, err))
		})
	}
	t.Run("prefixed name of exactly 255 characters", func(t *testing.T) {
		route, err := ParseReversePath(reversePrefix + fits + "/manifests/v1")
		require.NoError(t, err)
		assert.Equal(t, fits, route.Repository)
	})
}

func TestParseNativePath(t *testing.T) {
	for _, tc := range validRouteCases {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v2/" + tc.path
			route, err := ParseNativePath(path)
			require.NoError(t, err)
			assert.Equal(t, Route{Repository: tc.repository, Kind: tc.kind, Rest: tc.rest}, route, "native routes name no connector")
			assert.Equal(t, path, route.UpstreamPath(), "the registry sees the client's path")
		})
	}
}

func TestParseNativePathRefusals(t *testing.T) {
	for _, tc := range invalidRouteCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNativePath("/v2/" + tc.path)
			require.Error(t, err)
			assert.Equal(t, tc.code, routeCode(t, err))
		})
	}
	for _, tc := range []routeErrorCase{
		{"not under /v2/", "/v1/team/app/manifests/v1", codeNameInvalid},
		{"Harbor API", "/api/v2.0/projects", codeNameInvalid},
		{"base (answered before routing)", "/v2/", codeUnsupported},
		{"no leading slash", "v2/team/app/manifests/v1", codeNameInvalid},
		{"repository over 255 characters", "/v2/team/" + strings.Repeat("a", 256-len("team/")) + "/manifests/v1", codeNameInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNativePath(tc.path)
			require.Error(t, err)
			assert.Equal(t, tc.code, routeCode(t, err))
		})
	}
	t.Run("repository of exactly 255 characters", func(t *testing.T) {
		repo := "team/" + strings.Repeat("a", 255-len("team/"))
		route, err := ParseNativePath("/v2/" + repo + "/tags/list")
		require.NoError(t, err)
		assert.Equal(t, repo, route.Repository)
	})
}

func TestReversePathFor(t *testing.T) {
	for upstream, want := range map[string]string{
		"/v2/team/app/blobs/uploads/" + testUploadID: reversePrefix + "team/app/blobs/uploads/" + testUploadID,
		"/v2/team/app/tags/list":                     reversePrefix + "team/app/tags/list",
		"/v2/x":                                      reversePrefix + "x",
	} {
		got, ok := ReversePathFor(testConnector, upstream)
		require.True(t, ok, upstream)
		assert.Equal(t, want, got, upstream)
	}
	for _, outside := range []string{"", "/v2/", "/v2", "/api/v2.0/projects", "v2/team/app", "/V2/team/app"} {
		_, ok := ReversePathFor(testConnector, outside)
		assert.False(t, ok, "%q", outside)
	}
}
