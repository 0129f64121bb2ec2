package testharbor_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/clients"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

func start(t *testing.T, opts testharbor.Options) *testharbor.Server {
	t.Helper()
	h, err := testharbor.Start(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	h.AddProject("private", false)
	h.AddProject("public", true)
	return h
}

func client(h *testharbor.Server) *http.Client {
	tr := &http.Transport{}
	if pem := h.CACertPEM(); pem != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr}
}

func get(t *testing.T, h *testharbor.Server, path string, user, pass string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.URL()+path, nil)
	require.NoError(t, err)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client(h).Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestHarborAPIQuirks(t *testing.T) {
	h := start(t, testharbor.Options{})
	h.AddUser("alice", "Alice12345", false)
	robot, secret := h.AddRobot("private", "ci")
	assert.Equal(t, "robot$private+ci", robot)

	resp := get(t, h, "/api/v2.0/ping", "", "")
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "Pong", string(body))

	assert.Equal(t, 200, get(t, h, "/api/v2.0/users/current", "alice", "Alice12345").StatusCode)
	assert.Equal(t, 412, get(t, h, "/api/v2.0/users/current", robot, secret).StatusCode, "Harbor answers 412 to robots on /users/current")
	assert.Equal(t, 401, get(t, h, "/api/v2.0/users/current", "alice", "wrong").StatusCode)
	assert.Equal(t, 200, get(t, h, "/api/v2.0/users/current/permissions", robot, secret).StatusCode)
	assert.Equal(t, 200, get(t, h, "/api/v2.0/users/current/permissions", "alice", "Alice12345").StatusCode)
	assert.Equal(t, 401, get(t, h, "/api/v2.0/users/current/permissions", robot, "wrong").StatusCode)
	assert.Equal(t, 401, get(t, h, "/api/v2.0/users/current/permissions", "", "").StatusCode)
}

func TestRegistryChallengesAndTokens(t *testing.T) {
	h := start(t, testharbor.Options{})
	robot, secret := h.AddRobot("private", "ci")

	resp := get(t, h, "/v2/", "", "")
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, `Bearer realm="`+h.URL()+`/service/token",service="harbor-registry"`, resp.Header.Get("Www-Authenticate"))

	resp = get(t, h, "/v2/private/app/manifests/v1", "", "")
	assert.Equal(t, 401, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Www-Authenticate"), `scope="repository:private/app:pull"`)

	// Basic robot credentials work on /v2/ directly; bad ones get Harbor's Basic challenge.
	assert.Equal(t, 200, get(t, h, "/v2/", robot, secret).StatusCode)
	resp = get(t, h, "/v2/", robot, "wrong")
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, `Basic realm="harbor"`, resp.Header.Get("Www-Authenticate"))

	// The token service never refuses: bad credentials get a token with no actions.
	before := h.TokenFetches()
	resp = get(t, h, "/service/token?service=harbor-registry&scope=repository:private/app:pull,push", robot, "wrong")
	require.Equal(t, 200, resp.StatusCode)
	var tok struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	assert.Equal(t, 1800, tok.ExpiresIn)
	assert.Equal(t, before+1, h.TokenFetches())

	// ...and that token is denied on the repository with Harbor's Basic challenge.
	req, _ := http.NewRequest(http.MethodGet, h.URL()+"/v2/private/app/tags/list", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	denied, err := client(h).Do(req)
	require.NoError(t, err)
	denied.Body.Close()
	assert.Equal(t, 401, denied.StatusCode)
	assert.Equal(t, `Basic realm="harbor"`, denied.Header.Get("Www-Authenticate"))
}

// TestRealClientsPushAndPull drives crane against the test Harbor over TLS with the test CA as
// the only extra trust: a robot pushes to a private project, anonymous pulls of it fail, pulls of
// a public project succeed.
func TestRealClientsPushAndPull(t *testing.T) {
	h := start(t, testharbor.Options{TLS: true})
	robot, secret := h.AddRobot("private", "ci")
	pubRobot, pubSecret := h.AddRobot("public", "ci")
	crane := clients.Path(t, "crane")

	home := t.TempDir()
	caFile := filepath.Join(home, "ca.crt")
	require.NoError(t, os.WriteFile(caFile, h.CACertPEM(), 0o600))
	run := func(args ...string) (string, error) {
		cmd := exec.Command(crane, args...)
		cmd.Env = []string{"HOME=" + home, "DOCKER_CONFIG=" + home, "SSL_CERT_FILE=" + caFile}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("auth", "login", h.Host(), "-u", robot, "-p", secret)
	require.NoError(t, err, out)
	ref := h.Host() + "/private/app:v1"
	out, err = run("append", "--oci-empty-base", "-f", writeLayer(t), "-t", ref)
	require.NoError(t, err, out)
	digest, err := run("digest", ref)
	require.NoError(t, err, digest)
	assert.True(t, strings.HasPrefix(digest, "sha256:"), digest)

	out, err = run("auth", "logout", h.Host())
	require.NoError(t, err, out)
	out, err = run("manifest", ref)
	require.Error(t, err, "anonymous pull of a private project must fail")
	assert.Contains(t, out, "UNAUTHORIZED")

	out, err = run("auth", "login", h.Host(), "-u", pubRobot, "-p", pubSecret)
	require.NoError(t, err, out)
	out, err = run("copy", ref, h.Host()+"/public/app:v1")
	require.Error(t, err, "the public project's robot cannot read the private project")
	assert.Contains(t, out, "UNAUTHORIZED")
	out, err = run("append", "--oci-empty-base", "-f", writeLayer(t), "-t", h.Host()+"/public/app:v1")
	require.NoError(t, err, out)
	_, _ = run("auth", "logout", h.Host())
	out, err = run("manifest", h.Host()+"/public/app:v1")
	require.NoError(t, err, "anonymous pull of a public project works: %s", out)
}

func writeLayer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "hello.txt")
	require.NoError(t, os.WriteFile(src, []byte("hello from "+t.Name()), 0o644))
	tarPath := filepath.Join(dir, "layer.tar")
	out, err := exec.Command("tar", "-C", dir, "-cf", tarPath, "hello.txt").CombinedOutput()
	require.NoError(t, err, string(out))
	return tarPath
}
