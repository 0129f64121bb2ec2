package harborapi

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// The JSON shapes below are the parts of Harbor's swagger definitions (Project, Repository,
// Artifact, Tag, NativeReportSummary) this client reads.

type Project struct {
	ProjectID int               `json:"project_id"`
	Name      string            `json:"name"`
	RepoCount int               `json:"repo_count"`
	Metadata  map[string]string `json:"metadata"` // "public": "true" or "false", a string
}

type Repository struct {
	ID            int64  `json:"id"`
	ProjectID     int    `json:"project_id"`
	Name          string `json:"name"` // project/repository, e.g. team/nested/app
	ArtifactCount int    `json:"artifact_count"`
}

type Tag struct {
	ID           int64  `json:"id"`
	RepositoryID int64  `json:"repository_id"`
	ArtifactID   int64  `json:"artifact_id"`
	Name         string `json:"name"`
	PushTime     string `json:"push_time"`
}

type Artifact struct {
	ID                int64  `json:"id"`
	Type              string `json:"type"`
	Digest            string `json:"digest"`
	MediaType         string `json:"media_type"`
	ManifestMediaType string `json:"manifest_media_type"`
	Size              int64  `json:"size"`
	Tags              []Tag  `json:"tags"`
	// ScanOverview maps a report MIME type to its summary (with_scan_overview=true).
	ScanOverview map[string]ScanSummary `json:"scan_overview"`
}

// ScanSummary is Harbor's NativeReportSummary.
type ScanSummary struct {
	ReportID        string `json:"report_id"`
	ScanStatus      string `json:"scan_status"`
	Severity        string `json:"severity"`
	CompletePercent int    `json:"complete_percent"`
	Summary         struct {
		Total   int            `json:"total"`
		Fixable int            `json:"fixable"`
		Summary map[string]int `json:"summary"` // severity -> count
	} `json:"summary"`
	Scanner struct {
		Name    string `json:"name"`
		Vendor  string `json:"vendor"`
		Version string `json:"version"`
	} `json:"scanner"`
}

// reportTypes are the scan report MIME types asked for in X-Accept-Vulnerabilities, preferred
// first, as Harbor's UI asks: Harbor keys scan_overview by the one it serves.
var reportTypes = []string{
	"application/vnd.security.vulnerability.report; version=1.1",
	"application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
}

var acceptReports = http.Header{"X-Accept-Vulnerabilities": {strings.Join(reportTypes, ", ")}}

// Scan is the artifact's scan summary under the most preferred report type present.
func (a Artifact) Scan() (mimeType string, s ScanSummary, ok bool) {
	for _, m := range reportTypes {
		if s, ok := a.ScanOverview[m]; ok {
			return m, s, true
		}
	}
	return "", ScanSummary{}, false
}

// TagNames are the names of the artifact's tags, as listed.
func (a Artifact) TagNames() []string {
	var names []string
	for _, t := range a.Tags {
		names = append(names, t.Name)
	}
	return names
}

const apiRoot = "/api/v2.0"

// repositoryPath is the escaped path of a repository in Harbor's API. Harbor wants the
// repository name (without its project) URL-encoded twice: team's nested/app is nested%252Fapp,
// since its front decodes the path once before routing and a plain / would split the segment.
func repositoryPath(project, repository string) string {
	return apiRoot + "/projects/" + url.PathEscape(project) + "/repositories/" + url.PathEscape(url.PathEscape(repository))
}

// Ping is GET /api/v2.0/ping: Harbor answers "Pong".
func (c *Client) Ping(ctx context.Context) (string, error) {
	_, b, err := c.do(ctx, http.MethodGet, apiRoot+"/ping", nil, http.StatusOK, http.Header{"Accept": {"text/plain"}})
	return string(b), err
}

// Projects lists the projects the caller may see (GET /api/v2.0/projects), every page.
func (c *Client) Projects(ctx context.Context) ([]Project, Paging, error) {
	return list[Project](ctx, c, apiRoot+"/projects", nil, nil)
}

// Repositories lists a project's repositories, every page.
func (c *Client) Repositories(ctx context.Context, project string) ([]Repository, Paging, error) {
	return list[Repository](ctx, c, apiRoot+"/projects/"+url.PathEscape(project)+"/repositories", nil, nil)
}

var artifactQuery = url.Values{"with_tag": {"true"}, "with_scan_overview": {"true"}}

// Artifacts lists a repository's artifacts (repository without its project, may be nested) with
// their tags and scan overview, every page.
func (c *Client) Artifacts(ctx context.Context, project, repository string) ([]Artifact, Paging, error) {
	return list[Artifact](ctx, c, repositoryPath(project, repository)+"/artifacts", artifactQuery, acceptReports)
}

// Artifact reads one artifact by tag or digest, with its tags and scan overview.
func (c *Client) Artifact(ctx context.Context, project, repository, reference string) (Artifact, error) {
	var a Artifact
	_, err := c.getJSON(ctx, repositoryPath(project, repository)+"/artifacts/"+url.PathEscape(reference)+"?"+artifactQuery.Encode(), &a, acceptReports)
	return a, err
}

// Tags lists an artifact's tags, every page.
func (c *Client) Tags(ctx context.Context, project, repository, reference string) ([]Tag, Paging, error) {
	return list[Tag](ctx, c, repositoryPath(project, repository)+"/artifacts/"+url.PathEscape(reference)+"/tags", nil, nil)
}
