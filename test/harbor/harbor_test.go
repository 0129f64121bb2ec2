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

// Behind Harbor's nginx, a path is normalised before core routes it: dot segments, encoded or
// not, and encoded slashes all resolve, so a path under /api/v2.0/ can reach the token service
// (issue 12, finding 1). The test Harbor does the same (test/nginx checks it against nginx).
func TestRoutesOnNginxNormalisedPath(t *testing.T) {
	h := start(t, testharbor.Options{})
	robot, secret := h.AddRobot("private", "ci")
	query := "?service=harbor-registry&scope=repository:private/app:pull,push"
	for _, p := range []string{"/api/v2.0/../../service/token", "/api/v2.0/%2e%2e/%2e%2e/service/token", "/api/v2.0/..%2F..%2Fservice/token", "/api/v2.0/%2E%2E/%2E%2E//service/./token"} {
		before := h.TokenFetches()
		resp := get(t, h, p+query, robot, secret)
		require.Equal(t, http.StatusOK, resp.StatusCode, p)
		var tok struct {
			Token string `json:"token"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok), p)
		assert.NotEmpty(t, tok.Token, p)
		assert.Equal(t, before+1, h.TokenFetches(), "%s reached the token service", p)
	}

	resp := get(t, h, "/v2/../api/v2.0/ping", "", "")
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "Pong", string(body))
	assert.Equal(t, http.StatusOK, get(t, h, "/api/v2.0/users/current/../current/permissions", robot, secret).StatusCode)

	// ".." above the root is nginx's own 400.
	resp = get(t, h, "/api/v2.0/../../../service/token", robot, secret)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	body, _ = io.ReadAll(resp.Body)
	assert.Contains(t, string(body), "<center>nginx</center>")
	req, err := http.NewRequest(http.MethodGet, h.URL()+"/", nil)
	require.NoError(t, err)
	req.URL.Opaque = "/api/v2.0/ping%zz" // sent as is
	resp, err = client(h).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// NginxUpstreamURI is what Harbor's core receives from nginx for a request target (these cases
// were read off Debian's nginx 1.22; test/nginx compares it with nginx on many more).
func TestNginxUpstreamURI(t *testing.T) {
	cases := map[string]string{
		"/api/v2.0/../../service/token?service=x": "/service/token?service=x",
		"/api/v2.0/%2e%2e/%2E%2E/service/token":   "/service/token",
		"/api/v2.0/..%2F..%2Fservice/token":       "/service/token",
		"/api/v2.0/.%2e/x":                        "/api/x",
		"/v2//_catalog":                           "/v2/_catalog",
		"/a/./b/.":                                "/a/b/",
		"/a/b/..":                                 "/a/",
		"/api/v2.0/projects/p/repositories/a%252Fb/artifacts": "/api/v2.0/projects/p/repositories/a%252Fb/artifacts",
		"/a%2Fb":          "/a/b",
		"/a%41%3a":        "/aA:",
		"/a%5cb":          "/a%5Cb",
		"/a\\..\\b":       "/a\\..\\b", // a backslash is not a separator
		"/a%3fb?c":        "/a%3Fb?c",
		"/a%25%2e":        "/a%25.",
		"/a%e9":           "/a%E9",
		"/a#frag?x":       "/a",
		"/a?x=%2e%2e/..":  "/a?x=%2e%2e/..",
		"/a?":             "/a",
		"http://h/a/../b": "/b",
		"http://h":        "/",
	}
	for target, want := range cases {
		got, ok := testharbor.NginxUpstreamURI(target)
		assert.True(t, ok, target)
		assert.Equal(t, want, got, target)
	}
	for _, target := range []string{"/..", "/a/../..", "/%2e%2e", "/a%", "/a%4", "/a%zz", "/a%00", "/a b", "/a\x01", "a"} {
		_, ok := testharbor.NginxUpstreamURI(target)
		assert.False(t, ok, "%q: nginx answers 400", target)
	}
}

// Harbor core sets its session cookie on every response it serves (API, token service, login,
// and the registry requests it relays), unless the request carries a session it issued.
func TestSessionCookie(t *testing.T) {
	h := start(t, testharbor.Options{TLS: true})
	robot, secret := h.AddRobot("private", "ci")
	sid := func(resp *http.Response) string {
		for _, c := range resp.Cookies() {
			if c.Name == testharbor.SessionCookie {
				return c.Value
			}
		}
		return ""
	}
	var issued []string
	for _, p := range []string{"/api/v2.0/ping", "/api/v2.0/users/current/permissions", "/service/token?service=harbor-registry", "/v2/", "/v2/private/app/manifests/v1", "/c/login"} {
		resp := get(t, h, p, robot, secret)
		v := sid(resp)
		require.NotEmpty(t, v, "%s sets sid", p)
		raw := resp.Header.Values("Set-Cookie")
		require.Len(t, raw, 1, p)
		assert.Equal(t, "sid="+v+"; Path=/; HttpOnly", raw[0], p)
		issued = append(issued, v)
	}
	assert.ElementsMatch(t, issued, h.IssuedSessions())

	// Also on the registry's answers that core relays, unauthenticated or not.
	assert.NotEmpty(t, sid(get(t, h, "/v2/", "", "")))
	// Not from the portal's static files.
	assert.Empty(t, sid(get(t, h, "/", "", "")))
	assert.Empty(t, sid(get(t, h, "/harbor/projects", "", "")))
	// A client that returns its session gets no new one; an unknown sid gets a new one.
	req, err := http.NewRequest(http.MethodGet, h.URL()+"/api/v2.0/ping", nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: "sid", Value: issued[0]})
	resp, err := client(h).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, resp.Header.Values("Set-Cookie"))
	req.Header.Del("Cookie")
	req.AddCookie(&http.Cookie{Name: "sid", Value: "forged"})
	resp, err = client(h).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.NotEmpty(t, sid(resp))
}
