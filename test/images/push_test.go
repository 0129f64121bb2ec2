package images_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/images"
)

// A push puts each index under <registry>/<name>:<tag> and the SBOMs under their cosign tags,
// and the overlay maps the committed names to the pushed digests over config/default.
func TestPushAndOverlay(t *testing.T) {
	b := sharedBuild(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	prefix := host + "/harbor-connector"

	rt, err := images.Transport("")
	require.NoError(t, err)
	pushed, err := images.Push(context.Background(), prefix, b.opts.Version, b.images, rt)
	require.NoError(t, err)
	require.Len(t, pushed, len(images.Binaries))

	for i, img := range b.images {
		want, err := img.Index.Digest()
		require.NoError(t, err)
		assert.Equal(t, img.Name, pushed[i].Name)
		assert.Equal(t, prefix+"/"+img.Name+"@"+want.String(), pushed[i].Digest.String())

		tag, err := name.NewTag(prefix + "/" + img.Name + ":" + b.opts.Version)
		require.NoError(t, err)
		desc, err := remote.Head(tag, remote.WithTransport(rt))
		require.NoError(t, err)
		assert.Equal(t, want, desc.Digest, "the tag names the index")
		for _, s := range img.SBOMs {
			sbom, err := remote.Image(tag.Context().Tag(images.SBOMTag(s.Subject)), remote.WithTransport(rt))
			require.NoError(t, err, "SBOM of %s", s.Subject)
			m, err := sbom.Manifest()
			require.NoError(t, err)
			assert.EqualValues(t, "text/spdx+json", m.Layers[0].MediaType)
		}
	}

	dir := filepath.Join(t.TempDir(), "config")
	require.NoError(t, images.WriteOverlay(filepath.Join(dir, "overlays", "images"), filepath.Join(dir, "default"), pushed))
	raw, err := os.ReadFile(filepath.Join(dir, "overlays", "images", "kustomization.yaml"))
	require.NoError(t, err)
	var k struct {
		APIVersion, Kind string
		Resources        []string
		Images           []struct{ Name, NewName, Digest string }
	}
	require.NoError(t, yaml.UnmarshalStrict(raw, &k), string(raw))
	assert.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion)
	assert.Equal(t, "Kustomization", k.Kind)
	assert.Equal(t, []string{"../../default"}, k.Resources)
	require.Len(t, k.Images, len(pushed))
	for i, p := range pushed {
		assert.Equal(t, images.CommittedName(p.Name), k.Images[i].Name)
		assert.Equal(t, prefix+"/"+p.Name, k.Images[i].NewName)
		assert.Equal(t, p.Digest.DigestStr(), k.Images[i].Digest)
	}
}

// Plain HTTP goes to a loopback registry only: go-containerregistry would also fall back to it
// for private (RFC 1918) addresses, where a network could read the credentials.
func TestTransportRefusesPlainHTTPOffLoopback(t *testing.T) {
	rt, err := images.Transport("")
	require.NoError(t, err)
	for _, host := range []string{"10.0.0.1:5000", "192.168.1.10", "registry.local:5000", "example.com"} {
		req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/", nil)
		require.NoError(t, err)
		_, err = rt.RoundTrip(req)
		require.Error(t, err, host)
		assert.Contains(t, err.Error(), "refusing plain HTTP", host)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	for _, base := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		req, err := http.NewRequest(http.MethodGet, base+"/v2/", nil)
		require.NoError(t, err)
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err, base)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, base)
	}
}

func TestTransportRejectsABadRegistryCA(t *testing.T) {
	_, err := images.Transport(filepath.Join(t.TempDir(), "missing.crt"))
	assert.ErrorContains(t, err, "REGISTRY_CA=")

	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o644))
	_, err = images.Transport(notPEM)
	assert.ErrorContains(t, err, "holds no PEM certificate")
}

func TestRegistryMustBeARepository(t *testing.T) {
	_, err := images.Push(context.Background(), "Not A Registry", "v1", []*images.Image{{Name: "manager"}}, http.DefaultTransport)
	assert.ErrorContains(t, err, "REGISTRY=Not A Registry")
}

// Without a CA bundle the build stops before compiling anything, and says what to install.
func TestBuildNeedsACABundle(t *testing.T) {
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	_, err = images.Build(context.Background(), images.Options{Root: root, WorkDir: t.TempDir(), CABundle: filepath.Join(t.TempDir(), "none.crt")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "apt-get install ca-certificates")
}
