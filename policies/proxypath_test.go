package policies

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The valid forms of the proxy path, next to TestParseProxyPath's refusals: the first four
// segments name the connector and everything after them, slashes included, is the repository on
// the registry, whatever words it contains.
func TestParseProxyPathValid(t *testing.T) {
	for _, tc := range []struct {
		path       string
		ref        ConnectorRef
		repository string
	}{
		{"namespaces/team-a/connectors/harbor/app", ConnectorRef{"team-a", "harbor"}, "app"},
		{"namespaces/team-a/connectors/harbor/team/app", ConnectorRef{"team-a", "harbor"}, "team/app"},
		{"namespaces/team-a/connectors/harbor/team/sub/deep/app", ConnectorRef{"team-a", "harbor"}, "team/sub/deep/app"},
		// Docker Hub's implicit library/ is part of the repository, as the kubelet names it.
		{"namespaces/kube-public/connectors/hub/library/nginx", ConnectorRef{"kube-public", "hub"}, "library/nginx"},
		// Dots, dashes and underscores as names and repositories allow them.
		{"namespaces/ns-1/connectors/my.reg-2/proj_x/app.v2", ConnectorRef{"ns-1", "my.reg-2"}, "proj_x/app.v2"},
		// The keywords of the prefix may appear again inside the repository: only the first four
		// segments are the connector.
		{"namespaces/a/connectors/b/namespaces/c/connectors/d/app", ConnectorRef{"a", "b"}, "namespaces/c/connectors/d/app"},
		{"namespaces/a/connectors/b/connectors", ConnectorRef{"a", "b"}, "connectors"},
		// Registry API words are repository components here, not routes.
		{"namespaces/a/connectors/b/team/blobs/manifests", ConnectorRef{"a", "b"}, "team/blobs/manifests"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			ref, repository, ok := ParseProxyPath(tc.path)
			require.True(t, ok)
			assert.Equal(t, tc.ref, ref)
			assert.Equal(t, tc.repository, repository)
		})
	}
}

// More refusals: a segment of the prefix empty or misspelled (the keywords are case-sensitive).
func TestParseProxyPathRefusesIncompletePrefixes(t *testing.T) {
	for _, bad := range []string{
		"",
		"namespaces",
		"namespaces/a/connectors/b/",   // no repository
		"namespaces/a/connectors//app", // no connector name
		"Namespaces/a/connectors/b/app",
		"namespaces/a/Connectors/b/app",
		"connectors/b/namespaces/a/app", // the segments' order matters
	} {
		ref, repository, ok := ParseProxyPath(bad)
		assert.False(t, ok, "%q", bad)
		assert.Zero(t, ref, "%q", bad)
		assert.Empty(t, repository, "%q", bad)
	}
}

// What RewriteImage writes, ParseProxyPath reads back: the image's repository under its
// connector, with the tag and digest outside the path.
func TestParseProxyPathRoundTripsRewriteImage(t *testing.T) {
	ref := ConnectorRef{Namespace: "team-a", Name: "harbor"}
	for _, image := range []string{
		"harbor.example.com/team/app:v1",
		"harbor.example.com/team/sub/app@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"harbor.example.com:8443/team/app:v1@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"nginx",
	} {
		t.Run(image, func(t *testing.T) {
			img, err := ParseImage(image)
			require.NoError(t, err)
			rewritten, err := RewriteImage(img, "127.0.0.1:5050", ref)
			require.NoError(t, err)
			out, err := ParseImage(rewritten)
			require.NoError(t, err)
			gotRef, repository, ok := ParseProxyPath(out.Path)
			require.True(t, ok, out.Path)
			assert.Equal(t, ref, gotRef)
			assert.Equal(t, img.Path, repository)
			assert.Equal(t, img.Tag, out.Tag)
			assert.Equal(t, img.Digest, out.Digest)
		})
	}
}
