package proxy_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/clients"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/harborapi"
	"github.com/alauda/harbor-connector/test/harborapi/fixture"
)

// The Harbor API client of a Job (test/harborapi), holding no credential, through the forward
// proxy: the reads succeed with the connector's credentials added (paging, a nested repository,
// tags, scan overview) and the must-not probes are refused by the proxy, with messages naming
// the endpoint. Its own Harbor, so that every listing holds exactly what fixture.Seed made.
func TestForwardHarborAPIClient(t *testing.T) {
	ctx := context.Background()
	h, err := testharbor.Start(testharbor.Options{TLS: true, Hosts: []string{"harbor-api.test"}, ExternalHost: "harbor-api.test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	trackHarbor(h)
	// Seeding talks to the Harbor directly, its name dialled on loopback as the proxy dials it.
	f := fixture.Seed(t, h, &http.Transport{DialContext: testDial, TLSClientConfig: &tls.Config{RootCAs: poolWith(h.CACertPEM())}})
	require.NoError(t, connectorWithSecret(ctx, nsA, "fwdapi", h.URL(), f.Robot, f.Secret, h.CACertPEM(), nil))
	proxy := &url.URL{Scheme: "http", User: url.UserPassword(nsA+"/fwdapi", saToken(t, nsA)), Host: forwardAddr}

	c, err := harborapi.New(h.URL(), &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: interceptCA.Pool()}})
	require.NoError(t, err)
	fixture.AssertReads(t, c, f)
	for _, probe := range harborapi.MustNotProbes(f.Target.Project, f.Target.Repository) {
		r := c.Send(ctx, probe)
		require.NoError(t, r.Err, probe.Path)
		assert.True(t, r.Refused, "%s %s: %+v", probe.Method, probe.Path, r)
		assert.Equal(t, http.StatusForbidden, r.Status, probe.Path)
		assert.Equal(t, "DENIED", r.Code, probe.Path)
		assert.Equal(t, nsA+"/fwdapi", r.Connector, probe.Path)
		path, _, _ := strings.Cut(probe.Path, "?")
		assert.Contains(t, r.Message, path, "the refusal names the endpoint")
	}

	// The command as a Job runs it: HTTPS_PROXY and the interception CA in SSL_CERT_DIR only.
	dir := t.TempDir()
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	bin := filepath.Join(dir, "harbor-api-client")
	build := exec.Command("go", "build", "-o", bin, "./test/harborapi/cmd/harbor-api-client")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	certs := filepath.Join(dir, "certs")
	require.NoError(t, os.MkdirAll(certs, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(certs, "intercept-ca.pem"), interceptCA.CertPEM, 0o644))
	run := exec.Command(bin, "--harbor", h.URL(), "--project", "team", "--repository", "nested/app", "--tag", "v1")
	run.Env = []string{"HTTPS_PROXY=" + proxy.String(), "SSL_CERT_DIR=" + certs, "SSL_CERT_FILE=/nonexistent", "HOME=" + dir}
	b, err := run.Output()
	t.Logf("%s\n%s", strings.Join(run.Args, " "), b)
	require.NoError(t, err, "every read succeeded and every probe was refused")
	for _, want := range []string{
		"OK ping " + h.Host() + " answer=Pong",
		"OK projects " + h.Host() + " total=3 pages=2 names=",
		"OK repositories team total=3 pages=2 ",
		"OK artifacts team/nested/app total=3 pages=2 digest=" + f.Digest + " ",
		"OK tags team/nested/app@" + f.Digest + " total=3 pages=2 ",
		"OK scan team/nested/app:v1 digest=" + f.Digest + " status=Success",
		"REFUSED POST /api/v2.0/robots status=403 code=DENIED connector=team-a/fwdapi message=\"POST /api/v2.0/robots is not relayed",
		"REFUSED GET /api/v2.0/users/current status=403 code=DENIED connector=team-a/fwdapi message=\"GET /api/v2.0/users/current is not relayed",
		"REFUSED GET /service/token status=403 code=DENIED connector=team-a/fwdapi message=\"/service/token is not served",
	} {
		assert.Contains(t, string(b), want)
	}
	assert.NotContains(t, string(b), "ALLOWED")
	assert.NotContains(t, string(b), "FAIL")
}
