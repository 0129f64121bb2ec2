package testharbor_test

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

// pushRandom pushes a random image to h's repository:tag (go-containerregistry, Basic
// credentials exchanged at the token service) and returns its digest.
func pushRandom(t *testing.T, h *testharbor.Server, user, pass, repoTag string, moreTags ...string) string {
	t.Helper()
	img, err := random.Image(512, 2)
	require.NoError(t, err)
	auth := remote.WithAuth(&authn.Basic{Username: user, Password: pass})
	ref, err := name.ParseReference(h.Host()+"/"+repoTag, name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img, auth))
	for _, tag := range moreTags {
		require.NoError(t, remote.Tag(ref.Context().Tag(tag), img, auth))
	}
	d, err := img.Digest()
	require.NoError(t, err)
	return d.String()
}

// getJSON GETs path with optional Basic credentials and extra headers, decoding a 200's body
// into v; it returns the response with the body read into the returned string.
func getJSON(t *testing.T, h *testharbor.Server, path, user, pass string, v any, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.URL()+path, nil)
	require.NoError(t, err)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client(h).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK && v != nil {
		require.NoError(t, json.Unmarshal(b, v), string(b))
	}
	return resp, string(b)
}

// assertHarborError checks Harbor's error body: {"errors":[{"code":...,"message":...}]}.
func assertHarborError(t *testing.T, resp *http.Response, body string, status int, code, message string) {
	t.Helper()
	assert.Equal(t, status, resp.StatusCode, body)
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &e), body)
	require.Len(t, e.Errors, 1, body)
	assert.Equal(t, code, e.Errors[0].Code, body)
	if message != "" {
		assert.Equal(t, message, e.Errors[0].Message, body)
	}
}

type apiTag struct {
	ID           int64  `json:"id"`
	RepositoryID int64  `json:"repository_id"`
	ArtifactID   int64  `json:"artifact_id"`
	Name         string `json:"name"`
	PushTime     string `json:"push_time"`
	PullTime     string `json:"pull_time"`
	Immutable    *bool  `json:"immutable"`
}

type apiArtifact struct {
	ID                int64                     `json:"id"`
	Type              string                    `json:"type"`
	MediaType         string                    `json:"media_type"`
	ManifestMediaType string                    `json:"manifest_media_type"`
	ProjectID         int64                     `json:"project_id"`
	RepositoryID      int64                     `json:"repository_id"`
	Digest            string                    `json:"digest"`
	Size              int64                     `json:"size"`
	PushTime          string                    `json:"push_time"`
	Tags              []apiTag                  `json:"tags"`
	ExtraAttrs        map[string]any            `json:"extra_attrs"`
	AdditionLinks     map[string]map[string]any `json:"addition_links"`
	ScanOverview      map[string]struct {
		ScanStatus string `json:"scan_status"`
		Severity   string `json:"severity"`
		Summary    struct {
			Total *int `json:"total"`
		} `json:"summary"`
	} `json:"scan_overview"`
}

func tagNames(tags []apiTag) []string {
	var out []string
	for _, t := range tags {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

// TestHarborAPIProjectsRepositoriesArtifacts pushes images into a private project (one of them
// to the nested repository team/a/b) and reads them back through Harbor's API: JSON shapes of
// api/v2.0/swagger.yaml, paging headers, twice-encoded repository names, Harbor's refusals.
func TestHarborAPIProjectsRepositoriesArtifacts(t *testing.T) {
	h := start(t, testharbor.Options{})
	h.AddProject("team", false)
	robot, secret := h.AddRobot("team", "ci")
	h.AddUser("alice", "Alice12345", false)

	v1 := pushRandom(t, h, robot, secret, "team/app:v1")
	v2 := pushRandom(t, h, robot, secret, "team/app:v2", "latest")
	pushRandom(t, h, robot, secret, "team/web:v1")
	nested := pushRandom(t, h, robot, secret, "team/a/b:v1")

	// Projects: the robot sees its private project and the public ones; anonymous only these.
	var projects []struct {
		ProjectID  int               `json:"project_id"`
		Name       string            `json:"name"`
		RepoCount  *int              `json:"repo_count"`
		OwnerName  string            `json:"owner_name"`
		Metadata   map[string]string `json:"metadata"`
		CreateTime string            `json:"creation_time"`
	}
	resp, body := getJSON(t, h, "/api/v2.0/projects", robot, secret, &projects)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "2", resp.Header.Get("X-Total-Count"))
	assert.Empty(t, resp.Header.Get("Link"))
	require.Len(t, projects, 2, body)
	assert.Equal(t, "public", projects[0].Name)
	assert.Equal(t, "true", projects[0].Metadata["public"])
	assert.Equal(t, "team", projects[1].Name)
	assert.Equal(t, "false", projects[1].Metadata["public"], "metadata.public is a string, as in the swagger")
	require.NotNil(t, projects[1].RepoCount)
	assert.Equal(t, 3, *projects[1].RepoCount)
	assert.NotZero(t, projects[1].ProjectID)
	assert.NotEmpty(t, projects[1].CreateTime)
	resp, body = getJSON(t, h, "/api/v2.0/projects?page=2&page_size=1", robot, secret, &projects)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Len(t, projects, 1)
	assert.Equal(t, "team", projects[0].Name)
	assert.Equal(t, `</api/v2.0/projects?page=1&page_size=1>; rel="prev"`, resp.Header.Get("Link"))
	resp, body = getJSON(t, h, "/api/v2.0/projects", "", "", &projects)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Len(t, projects, 1, "anonymous callers see the public projects: %s", body)
	assert.Equal(t, "public", projects[0].Name)
	resp, body = getJSON(t, h, "/api/v2.0/projects", robot, "wrong", nil)
	assertHarborError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")

	for _, tc := range []struct {
		query, user string
		status      int
	}{{"?project_name=team", robot, 200}, {"?project_name=nowhere", robot, 404}, {"?project_name=team", "", 401}} {
		req, err := http.NewRequest(http.MethodHead, h.URL()+"/api/v2.0/projects"+tc.query, nil)
		require.NoError(t, err)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, secret)
		}
		resp, err := client(h).Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, tc.status, resp.StatusCode, "HEAD %s as %q", tc.query, tc.user)
	}

	// Repositories, one a page: X-Total-Count and Harbor's Link header.
	type repository struct {
		ID            int64  `json:"id"`
		ProjectID     int    `json:"project_id"`
		Name          string `json:"name"`
		ArtifactCount *int   `json:"artifact_count"`
		PullCount     *int   `json:"pull_count"`
		CreationTime  string `json:"creation_time"`
		UpdateTime    string `json:"update_time"`
	}
	wantLinks := map[int]string{
		1: `</api/v2.0/projects/team/repositories?page=2&page_size=1>; rel="next"`,
		2: `</api/v2.0/projects/team/repositories?page=1&page_size=1>; rel="prev" , </api/v2.0/projects/team/repositories?page=3&page_size=1>; rel="next"`,
		3: `</api/v2.0/projects/team/repositories?page=2&page_size=1>; rel="prev"`,
	}
	counts := map[string]int{}
	for page := 1; page <= 3; page++ {
		var repos []repository
		resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories?page_size=1&page="+string(rune('0'+page)), robot, secret, &repos)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Equal(t, "3", resp.Header.Get("X-Total-Count"))
		assert.Equal(t, wantLinks[page], resp.Header.Get("Link"), "page %d", page)
		require.Len(t, repos, 1, body)
		r := repos[0]
		require.NotNil(t, r.ArtifactCount, body)
		require.NotNil(t, r.PullCount, body)
		assert.NotZero(t, r.ID)
		assert.Equal(t, projects[0].ProjectID+1, r.ProjectID, "team was added after public")
		assert.NotEmpty(t, r.CreationTime)
		assert.NotEmpty(t, r.UpdateTime)
		counts[r.Name] = *r.ArtifactCount
	}
	assert.Equal(t, map[string]int{"team/app": 2, "team/web": 1, "team/a/b": 1}, counts)

	// Artifacts of team/app, newest first, with their tags.
	var artifacts []apiArtifact
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/app/artifacts", robot, secret, &artifacts)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "2", resp.Header.Get("X-Total-Count"))
	require.Len(t, artifacts, 2, body)
	byDigest := map[string]apiArtifact{}
	for _, a := range artifacts {
		byDigest[a.Digest] = a
		assert.Equal(t, "IMAGE", a.Type)
		assert.Equal(t, "application/vnd.docker.distribution.manifest.v2+json", a.ManifestMediaType)
		assert.Equal(t, "application/vnd.docker.container.image.v1+json", a.MediaType)
		assert.Greater(t, a.Size, int64(2*512), "manifest, config and layers")
		assert.NotEmpty(t, a.PushTime)
		assert.Nil(t, a.ScanOverview, "only with with_scan_overview")
		assert.Contains(t, a.AdditionLinks, "build_history")
		assert.NotZero(t, a.ProjectID)
	}
	assert.Equal(t, []string{"v1"}, tagNames(byDigest[v1].Tags))
	assert.Equal(t, []string{"latest", "v2"}, tagNames(byDigest[v2].Tags))
	for _, tag := range byDigest[v2].Tags {
		assert.Equal(t, byDigest[v2].ID, tag.ArtifactID)
		assert.Equal(t, byDigest[v2].RepositoryID, tag.RepositoryID)
		assert.Equal(t, "0001-01-01T00:00:00.000Z", tag.PullTime)
		require.NotNil(t, tag.Immutable)
	}
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/app/artifacts?with_tag=false&page_size=1&page=2", robot, secret, &artifacts)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Len(t, artifacts, 1)
	assert.Nil(t, artifacts[0].Tags)
	assert.Equal(t, `</api/v2.0/projects/team/repositories/app/artifacts?page=1&page_size=1&with_tag=false>; rel="prev"`, resp.Header.Get("Link"))

	// Scan overview keyed by the report's MIME type (X-Accept-Vulnerabilities, or the default).
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/app/artifacts?with_scan_overview=true", robot, secret, &artifacts)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	const harborReport = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
	const securityReport = "application/vnd.security.vulnerability.report; version=1.1"
	for _, a := range artifacts {
		require.Contains(t, a.ScanOverview, harborReport, body)
		assert.Equal(t, "Success", a.ScanOverview[harborReport].ScanStatus)
		require.NotNil(t, a.ScanOverview[harborReport].Summary.Total)
	}
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/app/artifacts?with_scan_overview=true", robot, secret, &artifacts, "X-Accept-Vulnerabilities", securityReport)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, artifacts[0].ScanOverview, securityReport, body)

	// One artifact by tag or digest, and its tags.
	var artifact apiArtifact
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/app/artifacts/latest", robot, secret, &artifact)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, v2, artifact.Digest)
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/app/artifacts/"+v1, robot, secret, &artifact)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, []string{"v1"}, tagNames(artifact.Tags))
	var tags []apiTag
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/app/artifacts/v2/tags?page_size=1", robot, secret, &tags)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "2", resp.Header.Get("X-Total-Count"))
	require.Len(t, tags, 1)
	assert.Equal(t, `</api/v2.0/projects/team/repositories/app/artifacts/v2/tags?page=2&page_size=1>; rel="next"`, resp.Header.Get("Link"))
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/app/artifacts/v9", robot, secret, nil)
	assertHarborError(t, resp, body, http.StatusNotFound, "NOT_FOUND", "artifact team/app:v9 not found")
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/nope/artifacts", robot, secret, nil)
	assertHarborError(t, resp, body, http.StatusNotFound, "NOT_FOUND", "repository team/nope not found")

	// Nested repository names are encoded twice: a/b is a%252Fb (a%252fb too). Once encoded, the
	// front decodes the slash and no API route matches: Harbor's router answers 404.
	for _, p := range []string{"a%252Fb", "a%252fb"} {
		resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/"+p+"/artifacts", robot, secret, &artifacts)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Len(t, artifacts, 1, body)
		assert.Equal(t, nested, artifacts[0].Digest)
		assert.Equal(t, "/api/v2.0/projects/team/repositories/a%252Fb/artifacts/"+nested+"/additions/build_history", artifacts[0].AdditionLinks["build_history"]["href"])
	}
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/a%252Fb/artifacts/v1/tags", robot, secret, &tags)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, []string{"v1"}, tagNames(tags))
	for _, p := range []string{"a%2Fb", "a/b"} {
		resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/"+p+"/artifacts", robot, secret, nil)
		assertHarborError(t, resp, body, http.StatusNotFound, "NOT_FOUND", "path /api/v2.0/projects/team/repositories/a/b/artifacts was not found")
	}
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories/a%252Fb%252Fc/artifacts", robot, secret, nil)
	assertHarborError(t, resp, body, http.StatusNotFound, "NOT_FOUND", "repository team/a/b/c not found")

	// Authorization: private projects need credentials with pull on them.
	for _, p := range []string{"/api/v2.0/projects/team/repositories", "/api/v2.0/projects/team/repositories/app/artifacts", "/api/v2.0/projects/team/repositories/app/artifacts/v1", "/api/v2.0/projects/team/repositories/a%252Fb/artifacts/v1/tags"} {
		resp, body = getJSON(t, h, p, "", "", nil)
		assertHarborError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
		resp, body = getJSON(t, h, p, "alice", "Alice12345", nil)
		assertHarborError(t, resp, body, http.StatusForbidden, "FORBIDDEN", "forbidden")
		resp, body = getJSON(t, h, p, robot, "wrong", nil)
		assertHarborError(t, resp, body, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
	}
	resp, body = getJSON(t, h, "/api/v2.0/projects/nowhere/repositories", "alice", "Alice12345", nil)
	assertHarborError(t, resp, body, http.StatusForbidden, "FORBIDDEN", "forbidden")
	assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
	pubRobot, pubSecret := h.AddRobot("public", "ci")
	pushRandom(t, h, pubRobot, pubSecret, "public/tool:v1")
	var repos []repository
	resp, body = getJSON(t, h, "/api/v2.0/projects/public/repositories", "", "", &repos)
	require.Equal(t, http.StatusOK, resp.StatusCode, "anonymous reads of a public project: %s", body)
	require.Len(t, repos, 1)
	assert.Equal(t, "public/tool", repos[0].Name)

	// go-swagger's validation of page_size.
	resp, body = getJSON(t, h, "/api/v2.0/projects/team/repositories?page_size=101", robot, secret, nil)
	assertHarborError(t, resp, body, http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY", "page_size in query should be less than or equal to 100")
}

// POST /api/v2.0/robots creates a robot and returns its secret (an endpoint the connectors
// proxy never relays): admins only.
func TestHarborAPICreateRobot(t *testing.T) {
	h := start(t, testharbor.Options{})
	h.AddUser("admin", "Harbor12345", true)
	h.AddUser("alice", "Alice12345", false)
	body := `{"name":"made","level":"project","duration":-1,"permissions":[{"kind":"project","namespace":"private","access":[{"resource":"repository","action":"pull"}]}]}`
	post := func(user, pass string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, h.URL()+"/api/v2.0/robots", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client(h).Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, out := post("", "")
	assertHarborError(t, resp, out, http.StatusUnauthorized, "UNAUTHORIZED", "")
	resp, out = post("alice", "Alice12345")
	assertHarborError(t, resp, out, http.StatusForbidden, "FORBIDDEN", "")
	resp, out = post("admin", "Harbor12345")
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	var created struct {
		ID     int    `json:"id"`
		Name   string `json:"name"`
		Secret string `json:"secret"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &created))
	assert.Equal(t, "robot$private+made", created.Name)
	assert.NotEmpty(t, created.Secret)
	assert.Equal(t, "/api/v2.0/robots/1", resp.Header.Get("Location"))
	r, b := getJSON(t, h, "/api/v2.0/projects/private/repositories", created.Name, created.Secret, nil)
	assert.Equal(t, http.StatusOK, r.StatusCode, "the new robot reads its project: %s", b)
}
