package proxy_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/clients"
)

// runClient runs a real client binary with only the ServiceAccount token (in config.json) as
// credential and the proxy's CA as extra trust (SSL_CERT_FILE for Go clients).
func runClient(t testing.TB, home, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(clients.Path(t, name), args...)
	cmd.Env = []string{"HOME=" + home, "DOCKER_CONFIG=" + home, "SSL_CERT_FILE=" + filepath.Join(home, "certs", "ca.crt"), "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// direct runs crane against the test Harbor itself with the robot's credentials, to compare.
func direct(t *testing.T, args ...string) string {
	t.Helper()
	home := t.TempDir()
	ca := filepath.Join(home, "ca.crt")
	require.NoError(t, os.WriteFile(ca, harbor.CACertPEM(), 0o644))
	robot, secret := harbor.AddRobot("team", fmt.Sprintf("direct%d", len(args)+int(randByte())))
	secrets.Store(secret, true)
	env := []string{"HOME=" + home, "DOCKER_CONFIG=" + home, "SSL_CERT_FILE=" + ca}
	login := exec.Command(clients.Path(t, "crane"), "auth", "login", harbor.Host(), "-u", robot, "-p", secret)
	login.Env = env
	out, err := login.CombinedOutput()
	require.NoError(t, err, string(out))
	cmd := exec.Command(clients.Path(t, "crane"), args...)
	cmd.Env = env
	out, err = cmd.Output()
	require.NoError(t, err, string(out))
	return string(out)
}

func randByte() byte {
	b := make([]byte, 1)
	_, _ = rand.Read(b)
	return b[0]
}

func layerTar(t testing.TB, size int) string {
	t.Helper()
	dir := t.TempDir()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "payload.bin"), data, 0o644))
	tarPath := filepath.Join(dir, "layer.tar")
	out, err := exec.Command("tar", "-C", dir, "-cf", tarPath, "payload.bin").CombinedOutput()
	require.NoError(t, err, string(out))
	return tarPath
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// crane pushes through the proxy and pulls back by tag and by digest; the manifest bytes equal
// what Harbor serves directly.
func TestCranePushPullByTagAndDigest(t *testing.T) {
	home := clientHome(t, saToken(t, nsA))
	ref := prefix(nsA, "harbor") + "/team/crane:v1"
	out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 256<<10), "-t", ref)
	require.NoError(t, err, out)
	digest, err := runClient(t, home, "crane", "digest", ref)
	require.NoError(t, err, digest)
	digest = strings.TrimSpace(digest)
	require.True(t, strings.HasPrefix(digest, "sha256:"))

	viaTag, err := runClient(t, home, "crane", "manifest", ref)
	require.NoError(t, err, viaTag)
	viaDigest, err := runClient(t, home, "crane", "manifest", prefix(nsA, "harbor")+"/team/crane@"+digest)
	require.NoError(t, err, viaDigest)
	assert.Equal(t, viaTag, viaDigest)
	assert.Equal(t, direct(t, "manifest", harbor.Host()+"/team/crane:v1"), viaTag, "byte-identical to direct access")

	dir := t.TempDir()
	out, err = runClient(t, home, "crane", "pull", "--format", "oci", ref, filepath.Join(dir, "img"))
	require.NoError(t, err, out)
	out, err = runClient(t, home, "crane", "pull", "--format", "oci", prefix(nsA, "harbor")+"/team/crane@"+digest, filepath.Join(dir, "img2"))
	require.NoError(t, err, out)
}

// oras pushes a 1 GiB blob (monolithic upload) and pulls it back byte-identical.
func TestOrasOneGiBLayer(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB transfer")
	}
	home := clientHome(t, saToken(t, nsA))
	dir := t.TempDir()
	big := filepath.Join(dir, "big.bin")
	f, err := os.Create(big)
	require.NoError(t, err)
	_, err = io.CopyN(f, rand.Reader, 1<<30)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	want := sha256File(t, big)

	ref := prefix(nsA, "harbor") + "/team/big:v1"
	ca := filepath.Join(home, "certs", "ca.crt")
	cfg := filepath.Join(home, "config.json")
	cmd := exec.Command(clients.Path(t, "oras"), "push", "--registry-config", cfg, "--ca-file", ca, "--disable-path-validation", ref, "big.bin:application/octet-stream")
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + home}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.NoError(t, os.Remove(big))

	pullDir := t.TempDir()
	cmd = exec.Command(clients.Path(t, "oras"), "pull", "--registry-config", cfg, "--ca-file", ca, "-o", pullDir, ref)
	cmd.Env = []string{"HOME=" + home}
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, want, sha256File(t, filepath.Join(pullDir, "big.bin")))
}

// regctl pushes with chunked uploads (PATCH in 1 MiB chunks) and copies between repositories of
// the same connector, which mounts the blobs instead of uploading them again.
func TestRegctlChunkedUploadAndMount(t *testing.T) {
	home := clientHome(t, saToken(t, nsA))
	out, err := runClient(t, home, "regctl", "registry", "set", proxyAddr, "--blob-chunk", "1048576", "--blob-max", "1")
	require.NoError(t, err, out)
	src := prefix(nsA, "harbor") + "/team/chunked:v1"
	craneOut, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 3<<20+12345), "-t", src)
	require.NoError(t, err, craneOut)

	// Re-push the image's layer with regctl's chunked uploads into a new repository.
	dst := prefix(nsA, "harbor") + "/team/chunked-copy:v1"
	out, err = runClient(t, home, "regctl", "image", "copy", "--force-recursive", src, dst)
	require.NoError(t, err, out)

	want, err := runClient(t, home, "crane", "manifest", src)
	require.NoError(t, err, want)
	got, err := runClient(t, home, "crane", "manifest", dst)
	require.NoError(t, err, got)
	assert.Equal(t, want, got)

	// Chunked push of fresh content.
	layer := layerTar(t, 3<<20+777)
	in, err := os.Open(layer)
	require.NoError(t, err)
	defer in.Close()
	put := exec.Command(clients.Path(t, "regctl"), "blob", "put", prefix(nsA, "harbor")+"/team/chunked-blob")
	put.Env = []string{"HOME=" + home, "SSL_CERT_FILE=" + filepath.Join(home, "certs", "ca.crt")}
	put.Stdin = in
	putOut, err := put.Output()
	require.NoError(t, err, string(putOut))
	digest := strings.TrimSpace(string(putOut))
	pulled := filepath.Join(t.TempDir(), "blob")
	out, err = runClient(t, home, "crane", "blob", prefix(nsA, "harbor")+"/team/chunked-blob@"+digest)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(pulled, []byte(out), 0o644))
	assert.Equal(t, sha256File(t, layer), sha256File(t, pulled))
	assert.Greater(t, strings.Count(logs.String(), `"op":"PATCH blobs/uploads"`), 2, "regctl sent several chunks")
}

// crane copies between repositories of the same connector: the upload is a cross-repository
// mount, which the proxy rewrites into Harbor's names.
func TestCrossRepositoryMount(t *testing.T) {
	home := clientHome(t, saToken(t, nsA))
	src := prefix(nsA, "harbor") + "/team/mount-src:v1"
	out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 2<<20), "-t", src)
	require.NoError(t, err, out)
	mountsBefore := strings.Count(logs.String(), `"op":"POST blobs/uploads","status":201`)
	out, err = runClient(t, home, "crane", "copy", src, prefix(nsA, "harbor")+"/team/mount-dst:v1")
	require.NoError(t, err, out)
	assert.Greater(t, strings.Count(logs.String(), `"op":"POST blobs/uploads","status":201`), mountsBefore, "the layer was mounted (201 on POST), not uploaded")
	a, _ := runClient(t, home, "crane", "digest", src)
	b, _ := runClient(t, home, "crane", "digest", prefix(nsA, "harbor")+"/team/mount-dst:v1")
	assert.Equal(t, a, b)
}

// A multi-arch index pushed through the proxy, pulled per platform and by digest.
func TestMultiArchIndex(t *testing.T) {
	home := clientHome(t, saToken(t, nsA))
	base := prefix(nsA, "harbor") + "/team/multi"
	var manifests []string
	for _, platform := range []string{"linux/amd64", "linux/arm64"} {
		tag := base + ":" + strings.ReplaceAll(platform, "/", "-")
		out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 64<<10), "-t", tag)
		require.NoError(t, err, out)
		out, err = runClient(t, home, "crane", "mutate", "--set-platform", platform, tag, "-t", tag)
		require.NoError(t, err, out)
		manifests = append(manifests, "-m", tag)
	}
	out, err := runClient(t, home, "crane", append(append([]string{"index", "append"}, manifests...), "-t", base+":v1")...)
	require.NoError(t, err, out)
	for _, platform := range []string{"linux/amd64", "linux/arm64"} {
		out, err := runClient(t, home, "crane", "config", "--platform", platform, base+":v1")
		require.NoError(t, err, out)
		assert.Contains(t, out, `"architecture":"`+strings.TrimPrefix(platform, "linux/")+`"`)
	}
	digest, err := runClient(t, home, "crane", "digest", base+":v1")
	require.NoError(t, err)
	out, err = runClient(t, home, "crane", "manifest", base+"@"+strings.TrimSpace(digest))
	require.NoError(t, err, out)
	assert.Contains(t, out, "application/vnd.oci.image.index.v1+json")
	assert.Equal(t, direct(t, "manifest", harbor.Host()+"/team/multi:v1"), out)
}

// skopeo (containers/image) copies to and from the proxy with the proxy CA in a cert dir and
// the token in an auth file, no insecure flag.
func TestSkopeoCopy(t *testing.T) {
	home := clientHome(t, saToken(t, nsA))
	certs := filepath.Join(home, "certs")
	auth := filepath.Join(home, "config.json")
	ociDir := filepath.Join(t.TempDir(), "oci")
	src := prefix(nsA, "harbor") + "/team/skopeo-src:v1"
	out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 128<<10), "-t", src)
	require.NoError(t, err, out)
	skopeo := func(args ...string) (string, error) {
		cmd := exec.Command(clients.Path(t, "skopeo"), args...)
		cmd.Env = []string{"HOME=" + home}
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	out, err = skopeo("copy", "--src-cert-dir", certs, "--src-authfile", auth, "docker://"+src, "oci:"+ociDir+":v1")
	require.NoError(t, err, out)
	out, err = skopeo("copy", "--dest-cert-dir", certs, "--dest-authfile", auth, "oci:"+ociDir+":v1", "docker://"+prefix(nsA, "harbor")+"/team/skopeo-dst:v1")
	require.NoError(t, err, out)
	out, err = skopeo("inspect", "--cert-dir", certs, "--authfile", auth, "docker://"+prefix(nsA, "harbor")+"/team/skopeo-dst:v1")
	require.NoError(t, err, out)
	assert.Contains(t, out, `"Digest": "sha256:`)
}
