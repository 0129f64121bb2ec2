package policies

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegistryHostMatching(t *testing.T) {
	https, err := RegistryHostOf("https://Harbor.Example.com/")
	require.NoError(t, err)
	assert.Equal(t, "harbor.example.com", https.Host)
	for domain, want := range map[string]bool{
		"harbor.example.com":      true,
		"HARBOR.example.COM":      true,
		"harbor.example.com:443":  true,
		"harbor.example.com:80":   false,
		"harbor.example.com:8443": false,
		"harbor.example.org":      false,
		"docker.io":               false,
	} {
		assert.Equal(t, want, https.Matches(domain), domain)
	}

	http, err := RegistryHostOf("http://10.0.0.5:80")
	require.NoError(t, err)
	assert.True(t, http.Matches("10.0.0.5"))
	assert.True(t, http.Matches("10.0.0.5:80"))
	assert.False(t, http.Matches("10.0.0.5:443"))

	port, err := RegistryHostOf("https://harbor.local:5443")
	require.NoError(t, err)
	assert.True(t, port.Matches("harbor.local:5443"))
	assert.False(t, port.Matches("harbor.local"))

	hub, err := RegistryHostOf("https://registry-1.docker.io")
	require.NoError(t, err)
	assert.True(t, hub.Matches("docker.io"), "nginx normalises to docker.io")
	assert.True(t, hub.Matches("index.docker.io"))

	_, err = RegistryHostOf("harbor.example.com")
	assert.Error(t, err)
}

func TestRewriteImage(t *testing.T) {
	ref := ConnectorRef{Namespace: "team-a", Name: "harbor"}
	const pull = "127.0.0.1:5050"
	const digest = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct{ in, want string }{
		{"harbor.example.com/team/app", pull + "/namespaces/team-a/connectors/harbor/team/app"},
		{"harbor.example.com/team/app:v1", pull + "/namespaces/team-a/connectors/harbor/team/app:v1"},
		{"harbor.example.com/team/app@" + digest, pull + "/namespaces/team-a/connectors/harbor/team/app@" + digest},
		{"harbor.example.com/team/app:v1@" + digest, pull + "/namespaces/team-a/connectors/harbor/team/app:v1@" + digest},
		{"harbor.example.com:443/team/sub/app:latest", pull + "/namespaces/team-a/connectors/harbor/team/sub/app:latest"},
		{"nginx", pull + "/namespaces/team-a/connectors/harbor/library/nginx"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			img, err := ParseImage(tc.in)
			require.NoError(t, err)
			got, err := RewriteImage(img, pull, ref)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			if !strings.Contains(tc.in, ":latest") {
				assert.NotContains(t, got, ":latest", "never adds :latest")
			}

			back, err := ParseImage(got)
			require.NoError(t, err)
			gotRef, repo, ok := ParseProxyPath(back.Path)
			require.True(t, ok)
			assert.Equal(t, ref, gotRef)
			assert.Equal(t, img.Path, repo)
		})
	}
}

func TestRewriteImageLengthLimit(t *testing.T) {
	ref := ConnectorRef{Namespace: "team-a", Name: "harbor"}
	fits := "team/" + strings.Repeat("a", 255-len(ProxyPath(ref))-1-len("team/"))
	img, err := ParseImage("harbor.example.com/" + fits)
	require.NoError(t, err)
	_, err = RewriteImage(img, "127.0.0.1:5050", ref)
	require.NoError(t, err, "exactly 255 characters fits")

	img, err = ParseImage("harbor.example.com/" + fits + "b")
	require.NoError(t, err)
	_, err = RewriteImage(img, "127.0.0.1:5050", ref)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "256-character repository path")
}

func TestParseProxyPath(t *testing.T) {
	for _, bad := range []string{"team/app", "namespaces/a/connectors/b", "namespaces//connectors/b/app", "namespaces/a/other/b/app"} {
		_, _, ok := ParseProxyPath(bad)
		assert.False(t, ok, bad)
	}
}
