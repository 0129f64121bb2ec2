package testharbor

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Harbor's v2.0 API for projects, repositories, artifacts and tags (api/v2.0/swagger.yaml in
// goharbor/harbor), read from the registry's storage (catalog.go).

// Scan report MIME types Harbor accepts in X-Accept-Vulnerabilities; the first is the default.
var scanReportMimeTypes = []string{
	"application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
	"application/vnd.security.vulnerability.report; version=1.1",
}

// harborIcon is the digest of the icon Harbor's image processor gives images.
const harborIcon = "sha256:0048162a053eef4d4ce3fe7518615bef084403614f8bca43b40ae2e762e11e06"

// apiTime formats a time as go-openapi's strfmt.DateTime does (zero times included, as
// pull_time of a never pulled artifact).
func apiTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00.000Z"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// apiID returns the stable ID of a repository, artifact or tag, numbering new ones in order.
func (s *Server) apiID(key string) int64 {
	s.apiIDsMu.Lock()
	defer s.apiIDsMu.Unlock()
	if s.apiIDs == nil {
		s.apiIDs = map[string]int64{}
	}
	id, ok := s.apiIDs[key]
	if !ok {
		id = int64(len(s.apiIDs) + 1)
		s.apiIDs[key] = id
	}
	return id
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// apiCaller authenticates the request's Basic credentials: nil for anonymous; invalid
// credentials get 401.
func (s *Server) apiCaller(w http.ResponseWriter, r *http.Request) (acc *account, ok bool) {
	if _, _, basic := r.BasicAuth(); !basic {
		return nil, true
	}
	if _, acc, ok = s.basicAccount(r); !ok {
		writeHarborError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
	}
	return acc, ok
}

// canRead reports whether acc (nil: anonymous) may read a project: public projects for anyone,
// private ones for accounts holding pull on them, and admins.
func (s *Server) canRead(acc *account, project string) bool {
	return len(s.accounts.granted(acc, project+"/", []string{ActionPull})) > 0
}

// requireProjectRead answers as Harbor's RequireProjectAccess does when the caller may not
// read the project (or it does not exist): 401 anonymous, 403 authenticated.
func (s *Server) requireProjectRead(w http.ResponseWriter, acc *account, project string) bool {
	if s.canRead(acc, project) {
		return true
	}
	if acc == nil {
		writeHarborError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
	} else {
		writeHarborError(w, http.StatusForbidden, "FORBIDDEN", "forbidden")
	}
	return false
}

// paging reads page and page_size (defaults 1 and 10, page_size at most 100; go-swagger's 422
// otherwise), sets X-Total-Count and Harbor's Link header, and returns the window of total
// items to send.
func paging(w http.ResponseWriter, r *http.Request, total int) (from, to int, ok bool) {
	query := r.URL.Query()
	param := func(name string, def int64) (int64, bool) {
		v := query.Get(name)
		if v == "" {
			return def, true
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			writeHarborError(w, http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY", fmt.Sprintf("%s in query must be of type int64: %q", name, v))
			return 0, false
		}
		return n, true
	}
	page, ok := param("page", 1)
	if !ok {
		return 0, 0, false
	}
	size, ok := param("page_size", 10)
	if !ok {
		return 0, 0, false
	}
	if size > 100 {
		writeHarborError(w, http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY", "page_size in query should be less than or equal to 100")
		return 0, 0, false
	}
	if page < 1 {
		page = 1
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	if size <= 0 { // no paging
		return 0, total, true
	}
	if links := harborLinks(r.URL, int64(total), page, size); links != "" {
		w.Header().Set("Link", links)
	}
	from64 := min((page-1)*size, int64(total))
	return int(from64), int(min(from64+size, int64(total))), true
}

// harborLinks is Harbor's BaseAPI.Links: the request's URL (path as received, escapes kept)
// with page and page_size set and the query unescaped, as `<url>; rel="prev"` and
// `<url>; rel="next"` joined by " , ".
func harborLinks(u *url.URL, total, page, size int64) string {
	var links []string
	link := func(p int64, rel string) {
		ul := url.URL{Path: u.Path, RawPath: u.RawPath}
		q := u.Query()
		q.Set("page", strconv.FormatInt(p, 10))
		q.Set("page_size", strconv.FormatInt(size, 10))
		ul.RawQuery = q.Encode()
		if unescaped, err := url.QueryUnescape(ul.RawQuery); err == nil {
			ul.RawQuery = unescaped
		}
		links = append(links, fmt.Sprintf(`<%s>; rel="%s"`, ul.String(), rel))
	}
	if page > 1 && (page-1)*size < total {
		link(page-1, "prev")
	}
	if size*page < total {
		link(page+1, "next")
	}
	return strings.Join(links, " , ")
}

// serveProjects is Harbor's GET /api/v2.0/projects: public projects for anyone, private ones
// for their members (accounts with grants on them) and admins; name and public filter; paged.
func (s *Server) serveProjects(w http.ResponseWriter, r *http.Request) {
	acc, ok := s.apiCaller(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	type visible struct {
		name   string
		public bool
		info   projectInfo
		role   int
	}
	var list []visible
	s.accounts.mu.RLock()
	for name, public := range s.accounts.projects {
		role := 0
		if acc != nil && !acc.robot && len(acc.grants[name]) > 0 {
			role = 3 // guest
			for _, a := range acc.grants[name] {
				if a == ActionPush {
					role = 2 // developer
				}
			}
		}
		member := acc != nil && (acc.admin || len(acc.grants[name]) > 0)
		if !public && !member {
			continue
		}
		if n := q.Get("name"); n != "" && n != name {
			continue
		}
		if p := q.Get("public"); p != "" {
			want, err := strconv.ParseBool(p)
			if err == nil && want != public {
				continue
			}
		}
		list = append(list, visible{name: name, public: public, info: s.accounts.projectInfo[name], role: role})
	}
	s.accounts.mu.RUnlock()
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	from, to, ok := paging(w, r, len(list))
	if !ok {
		return
	}
	out := []map[string]any{}
	for _, p := range list[from:to] {
		repos, err := s.repositories(p.name)
		if err != nil {
			writeHarborError(w, http.StatusInternalServerError, "UNKNOWN", "internal server error")
			return
		}
		created := apiTime(p.info.created)
		project := map[string]any{
			"project_id":    p.info.id,
			"owner_id":      1,
			"owner_name":    "admin",
			"name":          p.name,
			"creation_time": created,
			"update_time":   created,
			"repo_count":    len(repos),
			"chart_count":   0,
			"metadata":      map[string]string{"public": strconv.FormatBool(p.public)},
			"cve_allowlist": map[string]any{"id": p.info.id, "project_id": p.info.id, "items": []any{}, "creation_time": apiTime(time.Time{}), "update_time": apiTime(time.Time{})},
		}
		if p.role != 0 {
			project["current_user_role_id"] = p.role
			project["current_user_role_ids"] = []int{p.role}
		}
		out = append(out, project)
	}
	writeJSON(w, http.StatusOK, out)
}

// serveHeadProject is Harbor's HEAD /api/v2.0/projects?project_name=: whether a project
// exists, for authenticated callers.
func (s *Server) serveHeadProject(w http.ResponseWriter, r *http.Request) {
	acc, ok := s.apiCaller(w, r)
	if !ok {
		return
	}
	name := r.URL.Query().Get("project_name")
	s.accounts.mu.RLock()
	_, exists := s.accounts.projects[name]
	s.accounts.mu.RUnlock()
	switch {
	case acc == nil:
		writeHarborError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
	case name == "":
		writeHarborError(w, http.StatusUnprocessableEntity, "UNPROCESSABLE_ENTITY", "project_name in query is required")
	case !exists:
		writeHarborError(w, http.StatusNotFound, "NOT_FOUND", "project "+name+" not found")
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// apiRepository resolves {project_name} and {repository_name} for the repository routes:
// the caller must be allowed to read the project, and the repository name, which Harbor takes
// URL-encoded twice (a/b as a%252Fb; the front decoded once, the router gave one level back),
// is decoded once more. Unknown repositories are 404.
func (s *Server) apiRepository(w http.ResponseWriter, r *http.Request) (project string, repo *catalogRepository, ok bool) {
	acc, ok := s.apiCaller(w, r)
	if !ok {
		return "", nil, false
	}
	project = r.PathValue("project_name")
	if !s.requireProjectRead(w, acc, project) {
		return "", nil, false
	}
	name := r.PathValue("repository_name")
	if decoded, err := url.PathUnescape(name); err == nil {
		name = decoded // as go-openapi's router: an undecodable name is taken as is
	}
	full := project + "/" + name
	repo, err := s.repository(full)
	if err != nil {
		writeHarborError(w, http.StatusInternalServerError, "UNKNOWN", "internal server error")
		return "", nil, false
	}
	if repo == nil {
		writeHarborError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("repository %s not found", full))
		return "", nil, false
	}
	return project, repo, true
}

// serveRepositories is Harbor's GET /api/v2.0/projects/{project_name}/repositories.
func (s *Server) serveRepositories(w http.ResponseWriter, r *http.Request) {
	acc, ok := s.apiCaller(w, r)
	if !ok {
		return
	}
	project := r.PathValue("project_name")
	if !s.requireProjectRead(w, acc, project) {
		return
	}
	repos, err := s.repositories(project)
	if err != nil {
		writeHarborError(w, http.StatusInternalServerError, "UNKNOWN", "internal server error")
		return
	}
	from, to, ok := paging(w, r, len(repos))
	if !ok {
		return
	}
	out := []map[string]any{}
	for _, repo := range repos[from:to] {
		out = append(out, s.apiRepositoryJSON(project, repo))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) projectID(project string) int {
	s.accounts.mu.RLock()
	defer s.accounts.mu.RUnlock()
	return s.accounts.projectInfo[project].id
}

func (s *Server) apiRepositoryJSON(project string, repo *catalogRepository) map[string]any {
	return map[string]any{
		"id":             s.apiID("repository:" + repo.name),
		"project_id":     s.projectID(project),
		"name":           repo.name,
		"artifact_count": len(repo.artifacts),
		"pull_count":     0,
		"creation_time":  apiTime(repo.created),
		"update_time":    apiTime(repo.updated),
	}
}

// boolParam reads a boolean query parameter with its swagger default.
func boolParam(r *http.Request, name string, def bool) bool {
	if b, err := strconv.ParseBool(r.URL.Query().Get(name)); err == nil {
		return b
	}
	return def
}

// serveArtifacts is Harbor's GET .../repositories/{repository_name}/artifacts: with_tag
// (default true) and with_scan_overview (default false), paged.
func (s *Server) serveArtifacts(w http.ResponseWriter, r *http.Request) {
	project, repo, ok := s.apiRepository(w, r)
	if !ok {
		return
	}
	from, to, ok := paging(w, r, len(repo.artifacts))
	if !ok {
		return
	}
	out := []map[string]any{}
	for _, a := range repo.artifacts[from:to] {
		out = append(out, s.apiArtifactJSON(r, project, repo, a))
	}
	writeJSON(w, http.StatusOK, out)
}

// apiArtifact resolves {reference}, a digest or a tag.
func (s *Server) apiArtifact(w http.ResponseWriter, r *http.Request) (project string, repo *catalogRepository, a *catalogArtifact, ok bool) {
	project, repo, ok = s.apiRepository(w, r)
	if !ok {
		return "", nil, nil, false
	}
	ref := r.PathValue("reference")
	if strings.HasPrefix(ref, "sha256:") {
		a = repo.artifactsByDigest[ref]
	} else {
		for _, c := range repo.artifactsByDigest {
			for _, t := range c.tags {
				if t.name == ref {
					a = c
				}
			}
		}
	}
	if a == nil {
		sep := ":"
		if strings.HasPrefix(ref, "sha256:") {
			sep = "@"
		}
		writeHarborError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("artifact %s%s%s not found", repo.name, sep, ref))
		return "", nil, nil, false
	}
	return project, repo, a, true
}

// serveArtifact is Harbor's GET .../artifacts/{reference}.
func (s *Server) serveArtifact(w http.ResponseWriter, r *http.Request) {
	project, repo, a, ok := s.apiArtifact(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.apiArtifactJSON(r, project, repo, a))
}

// serveArtifactTags is Harbor's GET .../artifacts/{reference}/tags, paged.
func (s *Server) serveArtifactTags(w http.ResponseWriter, r *http.Request) {
	_, repo, a, ok := s.apiArtifact(w, r)
	if !ok {
		return
	}
	from, to, ok := paging(w, r, len(a.tags))
	if !ok {
		return
	}
	out := []map[string]any{}
	for _, t := range a.tags[from:to] {
		out = append(out, s.apiTagJSON(repo, a, t))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiTagJSON(repo *catalogRepository, a *catalogArtifact, t catalogTag) map[string]any {
	return map[string]any{
		"id":            s.apiID("tag:" + repo.name + ":" + t.name),
		"repository_id": s.apiID("repository:" + repo.name),
		"artifact_id":   s.apiID("artifact:" + repo.name + "@" + a.digest),
		"name":          t.name,
		"push_time":     apiTime(t.pushTime),
		"pull_time":     apiTime(time.Time{}),
		"immutable":     false,
		"signed":        false,
	}
}

func (s *Server) apiArtifactJSON(r *http.Request, project string, repo *catalogRepository, a *catalogArtifact) map[string]any {
	out := map[string]any{
		"id":                  s.apiID("artifact:" + repo.name + "@" + a.digest),
		"type":                a.kind,
		"media_type":          a.mediaType,
		"manifest_media_type": a.manifestMediaType,
		"project_id":          s.projectID(project),
		"repository_id":       s.apiID("repository:" + repo.name),
		"digest":              a.digest,
		"size":                a.size,
		"push_time":           apiTime(a.pushTime),
		"pull_time":           apiTime(time.Time{}),
		"tags":                nil,
		"labels":              nil,
		"references":          nil,
		"accessories":         nil,
	}
	if len(a.annotations) > 0 {
		out["annotations"] = a.annotations
	}
	if a.extraAttrs != nil {
		out["extra_attrs"] = a.extraAttrs
	}
	if a.kind == "IMAGE" {
		out["icon"] = harborIcon
	}
	_, repoPath, _ := strings.Cut(repo.name, "/")
	base := "/api/v2.0/projects/" + project + "/repositories/" + url.PathEscape(url.PathEscape(repoPath)) + "/artifacts/" + a.digest
	if a.kind == "IMAGE" {
		links := map[string]any{"vulnerabilities": map[string]any{"href": base + "/additions/vulnerabilities", "absolute": false}}
		if len(a.references) == 0 {
			links["build_history"] = map[string]any{"href": base + "/additions/build_history", "absolute": false}
		}
		out["addition_links"] = links
	}
	if len(a.references) > 0 {
		refs := []map[string]any{}
		for _, ref := range a.references {
			e := map[string]any{"parent_id": out["id"], "child_id": s.apiID("artifact:" + repo.name + "@" + ref.digest), "child_digest": ref.digest}
			if ref.platform != nil {
				e["platform"] = ref.platform
			}
			refs = append(refs, e)
		}
		out["references"] = refs
	}
	if boolParam(r, "with_tag", true) && len(a.tags) > 0 {
		tags := []map[string]any{}
		for _, t := range a.tags {
			tags = append(tags, s.apiTagJSON(repo, a, t))
		}
		out["tags"] = tags
	}
	if boolParam(r, "with_scan_overview", false) {
		out["scan_overview"] = map[string]any{acceptedReportMimeType(r): s.scanSummary(repo, a)}
	}
	return out
}

// acceptedReportMimeType is the first supported MIME type of X-Accept-Vulnerabilities, or the
// default.
func acceptedReportMimeType(r *http.Request) string {
	for _, v := range strings.Split(r.Header.Get("X-Accept-Vulnerabilities"), ",") {
		v = strings.TrimSpace(v)
		for _, m := range scanReportMimeTypes {
			if strings.EqualFold(strings.ReplaceAll(v, " ", ""), strings.ReplaceAll(m, " ", "")) {
				return m
			}
		}
	}
	return scanReportMimeTypes[0]
}

// scanSummary is the NativeReportSummary of a clean scan: the test Harbor behaves as a Harbor
// whose Trivy scanned every artifact on push and found nothing.
func (s *Server) scanSummary(repo *catalogRepository, a *catalogArtifact) map[string]any {
	return map[string]any{
		"report_id":        fmt.Sprintf("00000000-0000-0000-0000-%012d", s.apiID("artifact:"+repo.name+"@"+a.digest)),
		"scan_status":      "Success",
		"severity":         "None",
		"duration":         0,
		"summary":          map[string]any{"total": 0, "fixable": 0, "summary": map[string]int{}},
		"start_time":       apiTime(a.pushTime),
		"end_time":         apiTime(a.pushTime),
		"complete_percent": 100,
		"scanner":          map[string]string{"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
	}
}

// serveAPINotFound is what Harbor's API router (go-swagger) answers for a path under
// /api/v2.0/ that no operation matches, e.g. a repository name with a raw or once-encoded slash.
func serveAPINotFound(w http.ResponseWriter, r *http.Request) {
	writeHarborError(w, http.StatusNotFound, "NOT_FOUND", "path "+r.URL.EscapedPath()+" was not found")
}

// serveCreateRobot is Harbor's POST /api/v2.0/robots (a credential the connectors proxy must
// never relay): admins create a robot whose permissions grant repository pull or push on
// projects; the answer carries its name and secret.
func (s *Server) serveCreateRobot(w http.ResponseWriter, r *http.Request) {
	acc, ok := s.apiCaller(w, r)
	if !ok {
		return
	}
	if acc == nil {
		writeHarborError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
		return
	}
	if !acc.admin {
		writeHarborError(w, http.StatusForbidden, "FORBIDDEN", "forbidden")
		return
	}
	var req struct {
		Name        string `json:"name"`
		Level       string `json:"level"`
		Duration    int64  `json:"duration"`
		Permissions []struct {
			Kind      string `json:"kind"`
			Namespace string `json:"namespace"`
			Access    []struct {
				Resource string `json:"resource"`
				Action   string `json:"action"`
			} `json:"access"`
		} `json:"permissions"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" || len(req.Permissions) == 0 {
		writeHarborError(w, http.StatusBadRequest, "BAD_REQUEST", "bad request: a robot needs a name and permissions")
		return
	}
	grants := map[string][]string{}
	for _, p := range req.Permissions {
		for _, a := range p.Access {
			if p.Kind == "project" && a.Resource == "repository" && (a.Action == ActionPull || a.Action == ActionPush) {
				grants[p.Namespace] = append(grants[p.Namespace], a.Action)
			}
		}
	}
	name := "robot$" + req.Name
	if req.Level == "project" {
		name = "robot$" + req.Permissions[0].Namespace + "+" + req.Name
	}
	secret := randomSecret()
	s.accounts.mu.Lock()
	if _, exists := s.accounts.users[name]; exists {
		s.accounts.mu.Unlock()
		writeHarborError(w, http.StatusConflict, "CONFLICT", "robot account "+name+" already exists")
		return
	}
	s.accounts.users[name] = &account{password: secret, robot: true, grants: grants}
	s.accounts.nextRobotID++
	id := s.accounts.nextRobotID
	s.accounts.mu.Unlock()
	expires := int64(-1)
	if req.Duration > 0 {
		expires = time.Now().Add(time.Duration(req.Duration) * 24 * time.Hour).Unix()
	}
	w.Header().Set("Location", "/api/v2.0/robots/"+strconv.Itoa(id))
	writeJSON(w, http.StatusCreated, map[string]any{"id": id, "name": name, "secret": secret, "creation_time": apiTime(time.Now()), "expires_at": expires})
}
