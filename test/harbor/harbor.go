// Package testharbor is the test Harbor: the real CNCF distribution registry with token auth,
// fronted by a small server that reproduces Harbor 2.x's core where clients and the product can
// tell the difference (TESTING.md "Registry and Harbor behaviour"): the token service and its
// lenient answers, Basic robot credentials on /v2/, the Basic challenge after a denied
// authenticated request, /api/v2.0/ping, /api/v2.0/users/current (412 for robots) and
// /api/v2.0/users/current/permissions, public and private projects.
//
// Its REST API also serves, as api/v2.0/swagger.yaml in goharbor/harbor describes them and read
// from the registry's storage (api.go, catalog.go): GET and HEAD /api/v2.0/projects,
// /projects/{project_name}/repositories, .../repositories/{repository_name}/artifacts (with_tag,
// with_scan_overview keyed by the X-Accept-Vulnerabilities MIME type: every artifact shows a
// clean Trivy report, as if scanned on push), .../artifacts/{reference} (tag or digest) and
// .../artifacts/{reference}/tags, paged with page and page_size (default 10, at most 100), the
// X-Total-Count header and Harbor's Link header (`<url>; rel="prev" , <url>; rel="next"`).
// {repository_name} is URL-encoded twice (a/b as a%252Fb); once encoded, the front decodes the
// slash and no route matches: 404 NOT_FOUND "path ... was not found", as Harbor's router
// answers. Reads need pull on the project (public projects: anyone; admins: all); refusals are
// Harbor's {"errors":[{"code","message"}]}: 401 UNAUTHORIZED anonymous or with bad credentials,
// 403 FORBIDDEN authenticated (unknown projects too), 404 NOT_FOUND for unknown repositories
// and artifacts. POST /api/v2.0/robots (admins) creates a robot and returns its secret, for
// tests that show the connectors proxy never relays it. Other /api/v2.0/ paths get the
// router's 404.
//
// Like a Harbor behind its nginx front, it normalises request paths before routing (decoding,
// dot segments, merged slashes: /api/v2.0/../../service/token reaches the token service) and
// sets core's sid session cookie (front.go). It serves HTTP or TLS with a test CA, in process or
// as the test-harbor command.
package testharbor

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alauda/harbor-connector/test/testca"
)

// Options configure a test Harbor.
type Options struct {
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// TLS serves HTTPS with a certificate from a CA made for this server (see CACertPEM).
	TLS bool
	// Hosts the TLS certificate is valid for; default 127.0.0.1 and localhost.
	Hosts []string
	// ExternalHost is the host[:port] clients use (and the token realm names); default the
	// listener's address. A bare host name gets the listener's port.
	ExternalHost string
	// TokenTTL is the lifetime of issued tokens (Harbor's default is 30 minutes).
	TokenTTL time.Duration
	// Dir holds the registry's storage; default a new temporary directory, removed on Close.
	Dir string
	// StorageHost, when set, makes the registry redirect blob downloads to a separate object
	// store reached under this host name (e.g. "s3.harbor.test", or a subdomain of the
	// Harbor's own name), which refuses requests carrying Authorization, as S3 does.
	StorageHost string
}

// Server is a running test Harbor.
type Server struct {
	opts     Options
	accounts *accounts
	signer   *tokenSigner
	registry *registry
	http     *http.Server
	listener net.Listener
	url      string
	ca       *testca.CA
	ownDir   bool

	storage    *storage
	leaf       *testca.Leaf
	registryMu sync.Mutex

	tokenFetches  atomic.Int64
	uploadCancels atomic.Int64
	// uploadChunksStarted counts PATCH requests that reached the front.
	uploadChunksStarted atomic.Int64
	tokenServiceDown    atomic.Bool
	issuedMu            sync.Mutex
	issued              []string
	sessionsMu          sync.Mutex
	sessionIDs          map[string]bool
	// apiIDs numbers the repositories, artifacts and tags the API shows, as Harbor's database
	// does (api.go).
	apiIDsMu sync.Mutex
	apiIDs   map[string]int64
	// outage: the addresses served, and what SetDown closes and reopens (outage.go).
	outage outage
}

// Start runs a test Harbor until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 30 * time.Minute
	}
	if len(opts.Hosts) == 0 {
		opts.Hosts = []string{"127.0.0.1", "localhost"}
	}
	s := &Server{opts: opts, accounts: newAccounts(), sessionIDs: map[string]bool{}}
	if s.opts.Dir == "" {
		dir, err := os.MkdirTemp("", "test-harbor-")
		if err != nil {
			return nil, err
		}
		s.opts.Dir, s.ownDir = dir, true
	}
	var err error
	if s.signer, err = newTokenSigner(); err != nil {
		return nil, err
	}
	if s.listener, err = net.Listen("tcp", opts.Addr); err != nil {
		return nil, err
	}
	scheme := "http"
	if opts.TLS {
		if s.ca, err = testca.New("test-harbor CA"); err != nil {
			return nil, err
		}
		hosts := opts.Hosts
		if opts.StorageHost != "" {
			hosts = append(append([]string{}, hosts...), opts.StorageHost)
		}
		if s.leaf, err = s.ca.Issue(hosts...); err != nil {
			return nil, err
		}
		s.listener = s.withTLS(s.listener)
		scheme = "https"
	}
	host := opts.ExternalHost
	if host == "" {
		host = s.listener.Addr().String()
	} else if _, _, err := net.SplitHostPort(host); err != nil {
		_, port, _ := net.SplitHostPort(s.listener.Addr().String())
		host = net.JoinHostPort(host, port) // a bare name: the listener's port
	}
	s.url = scheme + "://" + host
	// The realm follows the external URL, scheme included: a client told an http realm for an
	// https registry refuses it, as with a real Harbor behind TLS.
	redirectBase := ""
	if opts.StorageHost != "" {
		var cert *tls.Certificate
		if s.leaf != nil {
			cert = &s.leaf.TLS
		}
		if s.storage, err = startStorage(filepath.Join(s.opts.Dir, "storage"), opts.StorageHost, cert); err != nil {
			return nil, err
		}
		redirectBase = s.storage.url
	}
	if s.registry, err = startRegistry(s.opts.Dir, s.url+"/service/token", s.signer.certPEM, redirectBase, ""); err != nil {
		s.listener.Close()
		return nil, err
	}
	// As behind Harbor's nginx: paths are normalised before routing, and core sets its session
	// cookie (front.go).
	s.http = &http.Server{Handler: nginxFront(s.sessions(s.routes())), ReadHeaderTimeout: 10 * time.Second, ErrorLog: serverLog(),
		ConnState: s.outage.track}
	s.serve(s.listener)
	return s, nil
}

// ServeAlso serves the same Harbor on another address at the same port (e.g. a bridge address
// that only exists once a node is up), so clients that resolve the Harbor's name to that address
// reach it like the first. The certificate and the external URL stay as they are. Close stops it.
func (s *Server) ServeAlso(ip string) error {
	_, port, _ := net.SplitHostPort(s.listener.Addr().String())
	l, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err != nil {
		return fmt.Errorf("test Harbor on %s: %w", ip, err)
	}
	s.serve(s.withTLS(l))
	return nil
}

// withTLS wraps l in the Harbor's TLS when it serves HTTPS.
func (s *Server) withTLS(l net.Listener) net.Listener {
	if s.leaf == nil {
		return l
	}
	return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{s.leaf.TLS}, MinVersion: tls.VersionTLS12})
}

// serve serves l until Close (or an outage, which reopens its address).
func (s *Server) serve(l net.Listener) {
	s.outage.add(l)
	go func() { _ = s.http.Serve(l) }()
}

// URL is the Harbor's base URL, e.g. https://127.0.0.1:43121.
func (s *Server) URL() string { return s.url }

// Host is the URL's host[:port], as image references name the registry.
func (s *Server) Host() string {
	u, _ := url.Parse(s.url)
	return u.Host
}

// CACertPEM is the CA that signed the TLS certificate (nil over HTTP).
func (s *Server) CACertPEM() []byte {
	if s.ca == nil {
		return nil
	}
	return s.ca.CertPEM
}

// AddProject creates a project; public projects allow anonymous pull.
func (s *Server) AddProject(name string, public bool) {
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	s.accounts.projects[name] = public
	if _, ok := s.accounts.projectInfo[name]; !ok {
		s.accounts.projectInfo[name] = projectInfo{id: len(s.accounts.projectInfo) + 1, created: time.Now()}
	}
}

// AddUser creates a user. Admins hold every action on every project.
func (s *Server) AddUser(name, password string, admin bool) {
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	s.accounts.users[name] = &account{password: password, admin: admin, grants: map[string][]string{}}
}

// AddRobot creates a project robot account, named as Harbor 2.x names them
// (robot$<project>+<name>), holding the given actions on its project (default pull and push),
// and returns its username and secret.
func (s *Server) AddRobot(project, name string, actions ...string) (username, secret string) {
	if len(actions) == 0 {
		actions = []string{ActionPull, ActionPush}
	}
	username, secret = "robot$"+project+"+"+name, randomSecret()
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	s.accounts.users[username] = &account{password: secret, robot: true, grants: map[string][]string{project: actions}}
	return username, secret
}

// RemoveAccount deletes a user or robot account: its credentials are refused from then on, as
// after deleting a robot in Harbor (tokens it was issued stay valid until they expire).
func (s *Server) RemoveAccount(username string) {
	s.accounts.mu.Lock()
	defer s.accounts.mu.Unlock()
	delete(s.accounts.users, username)
}

// StorageAuthRefused counts requests the object store refused because they carried
// Authorization (a leaked credential); StorageServed counts blobs it served.
func (s *Server) StorageAuthRefused() int64 { return s.storage.authRefused.Load() }

// StorageServed counts blob downloads the object store served.
func (s *Server) StorageServed() int64 { return s.storage.served.Load() }

// IssuedTokens returns every registry token the token service handed out, so tests can check
// none of them reaches a client of the proxy.
func (s *Server) IssuedTokens() []string {
	s.issuedMu.Lock()
	defer s.issuedMu.Unlock()
	return append([]string(nil), s.issued...)
}

// RestartRegistry stops the registry behind the front and starts it again on the same address
// and storage: in-flight requests to it fail, later ones succeed.
func (s *Server) RestartRegistry() error {
	addr := s.registry.listener.Addr().String()
	redirect := s.registry.redirectBase
	s.registry.close()
	r, err := startRegistry(s.opts.Dir, s.url+"/service/token", s.signer.certPEM, redirect, addr)
	if err != nil {
		return err
	}
	s.registryMu.Lock()
	s.registry = r
	s.registryMu.Unlock()
	return nil
}

// UploadCancels counts DELETE requests for upload sessions (cancelled uploads).
func (s *Server) UploadCancels() int64 { return s.uploadCancels.Load() }

// UploadChunksStarted counts upload chunks (PATCH requests) that reached Harbor, so a test can
// wait until a relayed upload is really in flight instead of sleeping.
func (s *Server) UploadChunksStarted() int64 { return s.uploadChunksStarted.Load() }

// TokenFetches counts requests to the token service since start.
func (s *Server) TokenFetches() int64 { return s.tokenFetches.Load() }

// SetTokenServiceDown makes the token service answer 503, for fault tests.
func (s *Server) SetTokenServiceDown(down bool) { s.tokenServiceDown.Store(down) }

// Close stops the server and removes its storage if Start created it.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.http.Close()
	}
	s.registry.close()
	if s.storage != nil {
		_ = s.storage.server.Close()
	}
	if s.ownDir {
		_ = os.RemoveAll(s.opts.Dir)
	}
	return err
}

// PutZeroBlob stores a blob of size zero bytes directly in the registry's storage and links it
// into repository, without uploading it: benchmarks need multi-GiB blobs in seconds. The file is
// sparse, so it costs no disk space; its digest is computed by reading it once.
func (s *Server) PutZeroBlob(repository string, size int64) (string, error) {
	tmp, err := os.CreateTemp(s.opts.Dir, "zero-blob-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Truncate(size); err != nil {
		tmp.Close()
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, tmp); err != nil {
		tmp.Close()
		return "", err
	}
	tmp.Close()
	hexDigest := hex.EncodeToString(h.Sum(nil))
	root := filepath.Join(s.opts.Dir, "storage", "docker", "registry", "v2")
	data := filepath.Join(root, "blobs", "sha256", hexDigest[:2], hexDigest, "data")
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), data); err != nil {
		return "", err
	}
	link := filepath.Join(root, "repositories", repository, "_layers", "sha256", hexDigest, "link")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return "", err
	}
	return "sha256:" + hexDigest, os.WriteFile(link, []byte("sha256:"+hexDigest), 0o644)
}

// FetchToken asks this Harbor's token service for a bearer token for scope with a user's or a
// robot's credentials, as a client talking to Harbor directly does (benchmarks' "direct" side).
func (s *Server) FetchToken(user, pass, scope string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, s.URL()+"/service/token?service=harbor-registry&scope="+url.QueryEscape(scope), nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(user, pass)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.CACertPEM())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token for %s: HTTP %d", scope, resp.StatusCode)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	return body.Token, nil
}
