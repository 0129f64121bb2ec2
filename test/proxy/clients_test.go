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
func runClient(t *testing.T, home, name string, args ...string) (string, error) {
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

func layerTar(t *testing.T, size int) string {
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
