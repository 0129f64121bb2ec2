package testharbor

import (
	"encoding/json"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /service/token", s.serveToken)
	mux.HandleFunc("GET /api/v2.0/ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Pong"))
	})
	mux.HandleFunc("GET /api/v2.0/users/current", s.serveCurrentUser)
	mux.HandleFunc("GET /api/v2.0/users/current/permissions", s.servePermissions)
	mux.HandleFunc("GET /api/v2.0/projects", s.serveProjects)
	mux.HandleFunc("HEAD /api/v2.0/projects", s.serveHeadProject)
	const repository = "/api/v2.0/projects/{project_name}/repositories/{repository_name}"
	mux.HandleFunc("GET /api/v2.0/projects/{project_name}/repositories", s.serveRepositories)
	mux.HandleFunc("GET "+repository+"/artifacts", s.serveArtifacts)
	mux.HandleFunc("GET "+repository+"/artifacts/{reference}", s.serveArtifact)
	mux.HandleFunc("GET "+repository+"/artifacts/{reference}/tags", s.serveArtifactTags)
	mux.HandleFunc("POST /api/v2.0/robots", s.serveCreateRobot)
	mux.HandleFunc("/api/v2.0/", serveAPINotFound)
	mux.Handle("/v2/", s.registryFront())
	return mux
}

// serveCurrentUser is Harbor's GET /api/v2.0/users/current: 200 for users, 412 for robots,
// 401 without valid credentials.
func (s *Server) serveCurrentUser(w http.ResponseWriter, r *http.Request) {
	user, acc, ok := s.basicAccount(r)
	if !ok {
		writeHarborError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
		return
	}
	if acc.robot {
		writeHarborError(w, http.StatusPreconditionFailed, "PRECONDITION", "get current user not available for security context: robot")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"username": user, "sysadmin_flag": acc.admin})
}

// servePermissions is Harbor's GET /api/v2.0/users/current/permissions: 200 with a list for
// users and robots alike, 401 without valid credentials.
func (s *Server) servePermissions(w http.ResponseWriter, r *http.Request) {
	_, acc, ok := s.basicAccount(r)
	if !ok {
		writeHarborError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unauthorized")
		return
	}
	perms := []map[string]string{}
	for project, actions := range acc.grants {
		for _, a := range actions {
			perms = append(perms, map[string]string{"resource": "/project/" + project + "/repository", "action": a})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(perms)
}

func (s *Server) basicAccount(r *http.Request) (string, *account, bool) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return "", nil, false
	}
	acc, ok := s.accounts.authenticate(user, pass)
	return user, acc, ok
}

// registryFront forwards /v2/ to the registry the way Harbor's core does: Basic credentials
// are exchanged for a token carrying the scope the request needs; Bearer tokens pass through;
// a denied request that carried credentials is answered with Harbor's Basic challenge instead
// of the registry's Bearer challenge.
func (s *Server) registryFront() http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			s.registryMu.Lock()
			backend, _ := url.Parse(s.registry.url)
			s.registryMu.Unlock()
			pr.SetURL(backend)
			pr.Out.Host = pr.In.Host // the registry builds Location URLs from the client's host
			pr.SetXForwarded()
			if s.opts.TLS {
				pr.Out.Header.Set("X-Forwarded-Proto", "https")
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusUnauthorized && resp.Request.Header.Get("Authorization") != "" {
				resp.Header.Set("Www-Authenticate", `Basic realm="harbor"`)
			}
			return nil
		},
		FlushInterval: -1,
		ErrorLog:      serverLog(),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			s.uploadCancels.Add(1)
		}
		if r.Method == http.MethodPatch {
			s.uploadChunksStarted.Add(1)
		}
		if user, pass, ok := r.BasicAuth(); ok {
			acc, ok := s.accounts.authenticate(user, pass)
			if !ok {
				w.Header().Set("Www-Authenticate", `Basic realm="harbor"`)
				writeHarborError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
				return
			}
			tok, _, err := s.signer.sign(user, s.grant(acc, scopeOf(r)), 5*time.Minute)
			if err != nil {
				writeHarborError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
				return
			}
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		proxy.ServeHTTP(w, r)
	})
}

// scopeOf computes the access a /v2/ request needs from its method and path, as Harbor's core
// does when it converts Basic credentials into a registry token.
func scopeOf(r *http.Request) []accessEntry {
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	if path == "" {
		return nil
	}
	if path == "_catalog" {
		return []accessEntry{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	}
	segments := strings.Split(path, "/")
	name := ""
	for i, seg := range segments {
		if i > 0 && (seg == "manifests" || seg == "blobs" || seg == "tags" || seg == "referrers") {
			name = strings.Join(segments[:i], "/")
			break
		}
	}
	if name == "" {
		return nil
	}
	var actions []string
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		actions = []string{ActionPull}
	case http.MethodDelete:
		actions = []string{ActionDelete}
	default:
		actions = []string{ActionPull, ActionPush}
	}
	out := []accessEntry{{Type: "repository", Name: name, Actions: actions}}
	if from := r.URL.Query().Get("from"); from != "" && r.URL.Query().Get("mount") != "" {
		out = append(out, accessEntry{Type: "repository", Name: from, Actions: []string{ActionPull}})
	}
	return out
}
