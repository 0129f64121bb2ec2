package csi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/policies"
)

// input renders with the install's proxy addresses, as the driver's defaults give them.
func input(token string) RenderInput {
	d := DefaultOptions()
	return RenderInput{
		Connectors:      []ConnectorInfo{{Ref: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, ProxyAddress: "https://" + d.ReverseHost + "/namespaces/team-a/connectors/harbor"}},
		Token:           token,
		ForwardProxy:    d.ForwardProxy,
		ForwardProxyTLS: d.ForwardProxyTLS,
		ReverseHost:     d.ReverseHost,
		CABundle:        testBundle,
		Configurations:  []string{ConfigBuildkitd, ConfigRegistry},
	}
}

func TestRenderSeedFiles(t *testing.T) {
	files, err := Render(input("tok-1"))
	require.NoError(t, err)
	assert.Equal(t, "https://team-a%2Fharbor:tok-1@connectors-proxy.connectors-system.svc:3129", string(files[FileHTTPSProxy]))
	assert.Equal(t, "http://team-a%2Fharbor:tok-1@connectors-proxy.connectors-system.svc:3128", string(files[FileHTTPProxy]))
	assert.Equal(t, "tok-1", string(files[FileToken]))
	assert.Contains(t, string(files[FileProxyAddress]), "/namespaces/team-a/connectors/harbor")
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	require.NoError(t, json.Unmarshal(files[policies.FileDockerConfig], &cfg))
	raw, err := base64.StdEncoding.DecodeString(cfg.Auths["connectors-proxy.connectors-system.svc"].Auth)
	require.NoError(t, err)
	assert.Equal(t, "team-a/harbor:tok-1", string(raw))
	assert.Equal(t, "[registry.\"connectors-proxy.connectors-system.svc\"]\n  tlsconfigdir = [\"/var/run/connectors/containers-ca\", \"/etc/buildkit/containers-ca\"]\n", string(files[FileBuildkitd]))
	assert.NotContains(t, string(files[FileBuildkitd]), "insecure")
	assert.Equal(t, files[policies.FileCACert], files["certs/connectors-ca.pem"])
	h, err := subjectHash(mustParse(t, testBundle).RawSubject)
	require.NoError(t, err)
	assert.Equal(t, testBundle, files[fmt.Sprintf("certs/%08x.0", h)], "OpenSSL finds the CA by its subject hash")

	_, err = Render(RenderInput{Connectors: input("").Connectors})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tokenRequests")
}

// Republishing with a new token replaces every file at once; old data is removed.
func TestWriteAtomicallyRepublish(t *testing.T) {
	dir := t.TempDir()
	first, err := Render(input("token-one"))
	require.NoError(t, err)
	require.NoError(t, WriteAtomically(dir, first))
	b, err := os.ReadFile(filepath.Join(dir, FileToken))
	require.NoError(t, err)
	assert.Equal(t, "token-one", string(b))

	second, err := Render(input("token-two"))
	require.NoError(t, err)
	require.NoError(t, WriteAtomically(dir, second))
	for name, want := range second {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, name)
		assert.Equal(t, string(want), string(got), name)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var dataDirs int
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..data_") {
			dataDirs++
		}
	}
	assert.Equal(t, 1, dataDirs, "the previous generation is removed")
	b, _ = os.ReadFile(filepath.Join(dir, policies.FileDockerConfig))
	assert.NotContains(t, string(b), base64.StdEncoding.EncodeToString([]byte("team-a/harbor:token-one")))
}
