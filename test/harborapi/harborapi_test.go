package harborapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/harborapi"
	"github.com/alauda/harbor-connector/test/harborapi/fixture"
)

// basicAuth plays the proxy's part for the direct tests: it adds the robot's credentials.
type basicAuth struct {
	next       http.RoundTripper
	user, pass string
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}

// seeded starts a TLS test Harbor filled by fixture.Seed and returns a transport trusting it.
func seeded(t *testing.T) (*testharbor.Server, fixture.Fixture, http.RoundTripper) {
	t.Helper()
	h, err := testharbor.Start(testharbor.Options{TLS: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(h.CACertPEM()))
	rt := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	return h, fixture.Seed(t, h, rt), rt
}

func newClient(t *testing.T, base string, rt http.RoundTripper) *harborapi.Client {
	t.Helper()
	c, err := harborapi.New(base, rt)
	require.NoError(t, err)
	return c
}

// Reads straight from the test Harbor with the robot's credentials: paging over every
// collection, a nested repository, tags and the scan overview.
func TestReadsDirect(t *testing.T) {
	h, f, rt := seeded(t)
	fixture.AssertReads(t, newClient(t, h.URL(), basicAuth{rt, f.Robot, f.Secret}), f)
}

// fields reads the key=value words of a Run line (values may be quoted).
var field = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

func fields(line string) map[string]string {
	out := map[string]string{}
	for _, m := range field.FindAllStringSubmatch(line, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// lineFor is the one output line starting with prefix.
func lineFor(t *testing.T, out, prefix string) map[string]string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			found = append(found, l)
		}
	}
	require.Len(t, found, 1, "one line %q in:\n%s", prefix, out)
	return fields(found[0])
}

func sortedList(s string) []string {
	out := strings.Split(s, ",")
	slices.Sort(out)
	return out
}

// assertRunReads checks Run's OK lines for f.
func assertRunReads(t *testing.T, out string, host string, f fixture.Fixture) {
	t.Helper()
	assert.Equal(t, "Pong", lineFor(t, out, "OK ping "+host+" ")["answer"])
	l := lineFor(t, out, "OK projects "+host+" ")
	assert.Equal(t, []string{"3", "2"}, []string{l["total"], l["pages"]})
	assert.Equal(t, f.Projects, sortedList(l["names"]))
	l = lineFor(t, out, "OK repositories team ")
	assert.Equal(t, []string{"3", "2"}, []string{l["total"], l["pages"]})
	assert.Equal(t, f.Repositories, sortedList(l["names"]))
	l = lineFor(t, out, "OK artifacts team/nested/app ")
	assert.Equal(t, []string{"3", "2", f.Digest, "Success/None"}, []string{l["total"], l["pages"], l["digest"], l["scan"]})
	assert.Equal(t, f.Tags, sortedList(l["tags"]))
	l = lineFor(t, out, "OK tags team/nested/app@"+f.Digest+" ")
	assert.Equal(t, f.Tags, sortedList(l["names"]))
	l = lineFor(t, out, "OK scan team/nested/app:v1 ")
	assert.Equal(t, []string{f.Digest, "Success", "Trivy"}, []string{l["digest"], l["status"], l["scanner"]})
}

// Run straight against Harbor: the reads succeed, but no proxy refuses the probes: Harbor
// answers them itself (robot creation forbidden to a robot, no current user for a robot, a
// registry token for anyone), so each is ALLOWED and Run fails.
func TestRunDirectProbesAllowed(t *testing.T) {
	h, f, rt := seeded(t)
	var out strings.Builder
	ok := harborapi.Run(context.Background(), newClient(t, h.URL(), basicAuth{rt, f.Robot, f.Secret}), f.Target, &out)
	t.Log("\n" + out.String())
	assert.False(t, ok, "probes answered by Harbor are not refused")
	assertRunReads(t, out.String(), h.Host(), f)
	assert.NotContains(t, out.String(), "REFUSED")
	assert.NotContains(t, out.String(), "FAIL")
	for prefix, status := range map[string]string{
		"ALLOWED POST /api/v2.0/robots ":       "403",
		"ALLOWED GET /api/v2.0/users/current ": "412",
		"ALLOWED GET /service/token ":          "200",
	} {
		assert.Equal(t, status, lineFor(t, out.String(), prefix)["status"], prefix)
	}
}

// Without credentials the private project cannot be read: FAIL lines and Run fails.
func TestRunAnonymousFails(t *testing.T) {
	h, f, rt := seeded(t)
	var out strings.Builder
	ok := harborapi.Run(context.Background(), newClient(t, h.URL(), rt), f.Target, &out)
	assert.False(t, ok)
	assert.Equal(t, "alpha,beta", lineFor(t, out.String(), "OK projects ")["names"], "anonymous: public projects only")
	assert.Contains(t, out.String(), "FAIL repositories team: GET /api/v2.0/projects/team/repositories: status 401 UNAUTHORIZED")
	assert.Contains(t, out.String(), "FAIL artifacts team/nested/app: GET /api/v2.0/projects/team/repositories/nested%252Fapp/artifacts: status 401")
}

// fakeHarbor answers every request with handler, for the checks a real Harbor never trips.
func fakeHarbor(t *testing.T, handler http.HandlerFunc) *harborapi.Client {
	t.Helper()
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return newClient(t, s.URL, nil)
}

// Paging refuses what would hide items or never end: a total that does not match the items, a
// total that changes, a Link that loops or leaves the Harbor.
func TestPagingChecks(t *testing.T) {
	for _, tc := range []struct {
		name, total, link, want string
	}{
		{"short", "3", "", "X-Total-Count is 3 but the 1 pages held 1 items"},
		{"loop", "3", `</api/v2.0/projects?page=1&page_size=2>; rel="next"`, "loops"},
		{"elsewhere", "3", `<https://elsewhere.example/api/v2.0/projects?page=2&page_size=2>; rel="next"`, "is not on"},
		{"no total", "", "", "X-Total-Count \"\" is not a count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeHarbor(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Total-Count", tc.total)
				w.Header().Set("Link", tc.link)
				_, _ = w.Write([]byte(`[{"name":"a"}]`))
			})
			_, _, err := c.Projects(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// A changing total, and Harbor's own Link format (prev and next joined by " , ").
	c := fakeHarbor(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "1" {
			w.Header().Set("X-Total-Count", "2")
			w.Header().Set("Link", `</api/v2.0/projects?page=0&page_size=2>; rel="prev" , </api/v2.0/projects?page=2&page_size=2>; rel="next"`)
		} else {
			w.Header().Set("X-Total-Count", "4")
		}
		_, _ = w.Write([]byte(`[{"name":"a"}]`))
	})
	_, _, err := c.Projects(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "X-Total-Count changed from 2 to 4")
}

// Only a 403 with an error body naming the connector is the proxy's refusal.
func TestProbeRefusedOnlyByTheProxy(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		refused    bool
	}{
		{"proxy", `{"errors":[{"code":"DENIED","message":"no","detail":{"connector":"ns/c"}}]}`, 403, true},
		{"harbor", `{"errors":[{"code":"FORBIDDEN","message":"forbidden"}]}`, 403, false},
		{"not an error body", `forbidden`, 403, false},
		{"other status", `{"errors":[{"code":"DENIED","message":"no","detail":{"connector":"ns/c"}}]}`, 401, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeHarbor(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			r := c.Send(context.Background(), harborapi.MustNotProbes("team", "app")[0])
			require.NoError(t, r.Err)
			assert.Equal(t, tc.refused, r.Refused)
			assert.Equal(t, tc.status, r.Status)
		})
	}
}
