package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/policies"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

// A Harbor whose registry redirects blob downloads to an object store on a subdomain of its own
// name (s3.harbor.test under harbor.test: Go's redirect logic would copy Authorization there,
// moby#50065), which refuses any request carrying Authorization, as S3 does.
func TestStorageRedirects(t *testing.T) {
	ctx := context.Background()
	h, err := testharbor.Start(testharbor.Options{TLS: true, Hosts: []string{"harbor.test"}, ExternalHost: "harbor.test", StorageHost: "s3.harbor.test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	trackHarbor(h)
	h.AddProject("team", false)
	robot, secret := h.AddRobot("team", "ci")
	require.NoError(t, connectorWithSecret(ctx, nsA, "s3harbor", h.URL(), robot, secret, h.CACertPEM(), nil))
	require.NoError(t, connectorWithSecret(ctx, nsA, "s3pass", h.URL(), robot, secret, h.CACertPEM(),
		map[string]string{policies.AnnotationStorageRedirects: "pass-through"}))

	home := clientHome(t, saToken(t, nsA))
	ref := prefix(nsA, "s3harbor") + "/team/redirected:v1"
	out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 1<<20), "-t", ref)
	require.NoError(t, err, out)

	// Real client pull: every blob download is redirected, followed by the proxy without the
	// credential, and served correctly.
	dir := t.TempDir()
	out, err = runClient(t, home, "crane", "pull", "--format", "oci", ref, dir+"/img")
	require.NoError(t, err, out)
	assert.Greater(t, h.StorageServed(), int64(0), "downloads went through the object store")
	assert.Zero(t, h.StorageAuthRefused(), "the object store never received an Authorization header")

	// The layer's bytes match its digest, by GET and by HEAD (answered without a HEAD to S3).
	layer := firstLayer(t, "s3harbor", "redirected", "v1")
	token := saToken(t, nsA)
	resp := request(t, "GET", "/v2/namespaces/team-a/connectors/s3harbor/team/redirected/blobs/"+layer, token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sum := sha256.New()
	n, err := io.Copy(sum, resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, layer, "sha256:"+hex.EncodeToString(sum.Sum(nil)))
	head := request(t, "HEAD", "/v2/namespaces/team-a/connectors/s3harbor/team/redirected/blobs/"+layer, token, nil)
	head.Body.Close()
	assert.Equal(t, http.StatusOK, head.StatusCode)
	assert.Equal(t, n, head.ContentLength)
	assert.Equal(t, layer, head.Header.Get("Docker-Content-Digest"))
	assert.Zero(t, h.StorageAuthRefused())

	// Pass-through: the client gets the redirect to the object store as is.
	resp = request(t, "GET", "/v2/namespaces/team-a/connectors/s3pass/team/redirected/blobs/"+layer, token, nil)
	resp.Body.Close()
	assert.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	assert.Equal(t, "s3.harbor.test", loc.Hostname())
}

func firstLayer(t *testing.T, connector, repo, tag string) string {
	t.Helper()
	resp := request(t, "GET", "/v2/namespaces/team-a/connectors/"+connector+"/team/"+repo+"/manifests/"+tag, saToken(t, nsA), nil)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	require.NotEmpty(t, m.Layers)
	return m.Layers[0].Digest
}
