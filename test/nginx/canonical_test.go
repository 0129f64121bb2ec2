// Package nginx_test checks the proxy's path canonicaliser (policies.CanonicalPath) and the test
// Harbor's imitation of Harbor's front (testharbor.NginxUpstreamURI) against the real thing:
// Debian's nginx, configured as Harbor's front is (proxy_pass with a URI), in front of a backend
// that records the request target it receives. nginx comes from test/tools/clients.sh (make test
// installs it); without it the suite fails, naming the command that installs it.
package nginx_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/clients"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

// frontAddr is nginx's listener; it proxies every request to a backend that answers with the
// request target it received.
var frontAddr string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	bin, err := clients.Lookup("nginx")
	if err != nil {
		fmt.Fprintf(os.Stderr, "nginx is not installed: %v (run: test/tools/clients.sh, or apt-get install -y nginx-light)\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "nginx-front-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	backend, err := startBackend()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer backend.Close()
	stop, err := startNginx(bin, dir, backend.Addr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	return m.Run()
}

// startBackend answers every request with 200, the header X-Backend: 1 and, as the body, the
// request target exactly as it arrived (read from the raw request line, so no HTTP library
// re-encodes it).
func startBackend() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				for { // the headers; nginx sends no body for these GETs
					h, err := r.ReadString('\n')
					if err != nil || h == "\r\n" || h == "\n" {
						break
					}
				}
				parts := strings.Split(strings.TrimRight(line, "\r\n"), " ")
				target := ""
				if len(parts) == 3 {
					target = parts[1]
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Backend: 1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(target), target)
			}(conn)
		}
	}()
	return ln, nil
}

// startNginx runs nginx in the foreground, one process, with Harbor's kind of proxy_pass (with
// a URI, so nginx sends its normalised URI, not the client's bytes).
func startNginx(bin, dir, backend string) (func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	frontAddr = ln.Addr().String()
	ln.Close()
	conf := filepath.Join(dir, "nginx.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s;
    location / {
      proxy_pass http://%[3]s/;
    }
  }
}
`, dir, frontAddr, backend)), 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-e", filepath.Join(dir, "error.log"), "-c", conf, "-g", "daemon off;")
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		out.Close()
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", frontAddr, time.Second); err == nil {
			c.Close()
			return stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	log, _ := os.ReadFile(filepath.Join(dir, "nginx.out"))
	errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
	return nil, fmt.Errorf("nginx did not listen on %s: %s%s", frontAddr, log, errLog)
}

// viaNginx sends target, byte for byte, through nginx and returns what reached the backend, or
// forwarded=false with nginx's own status when nginx answered itself.
func viaNginx(t *testing.T, target string) (got string, forwarded bool, status int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", frontAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialling nginx: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: harbor.test\r\nConnection: close\r\n\r\n", target); err != nil {
		t.Fatalf("writing to nginx: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: reading nginx's answer: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Backend") != "1" {
		return "", false, resp.StatusCode
	}
	return string(body), true, resp.StatusCode
}

// canonicalCases are request paths, canonical or not: the issue's reproductions and every kind
// of spelling the canonicaliser must refuse or keep.
var canonicalCases = []string{
	// Canonical: nginx must pass them on byte for byte.
	"/", "/v2/", "/v2/team/app/manifests/v1", "/v2/team/sub/app/blobs/uploads/",
	"/v2/team/app/manifests/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	"/v2/namespaces/team-a/connectors/harbor/team/app/tags/list",
	"/api/v2.0/ping", "/api/v2.0/projects/team/repositories/app/artifacts/v1/tags",
	"/api/v2.0/projects/team/repositories/a%252Fb/artifacts",
	"/api/v2.0/projects/team/repositories/a%252fb%252Fc/artifacts/sha256:abc/additions/values.yaml",
	"/a/.well-known/x", "/a/..b/b../...", "/a!$&'()*+,;=:@~b", "/v2/my.app_x-y/manifests/v1.2_rc-3",
	// The issue's reproductions.
	"/api/v2.0/../../service/token", "/api/v2.0/%2e%2e/%2e%2e/service/token", "/api/v2.0/..%2F..%2Fservice/token",
	"/api/v2.0/%2E%2E/%2E%2E/c/login", "/api/v2.0/../../v2/_catalog",
	// Dot segments, separators and empty segments in every spelling.
	"/api/v2.0/./ping", "/api/v2.0/.%2e/x", "/api/v2.0/%2e./x", "/v2/..", "/v2/.", "/..", "/%2e%2e", "/a/b/..",
	"/v2/team%2Fapp/manifests/v1", "/v2/team%2fapp", "/v2/team\\..\\_catalog", "/v2/team%5C..%5C_catalog",
	"//v2/", "/v2//_catalog", "/a%2F%2Fb", "/a/%2F/b", "/a/.%2F..%2Fb",
	// Double encoding, in and out of Harbor's repository segment.
	"/api/v2.0/%252e%252e/service/token", "/v2/team%252Fapp/manifests/v1",
	"/api/v2.0/projects/team/repositories/a%25252Fb", "/api/v2.0/projects/team/repositories/a%2Fb",
	"/api/v2.0/projects/team/repositories/%252F..%252Fx", "/a%25", "/a%2525",
	// Escapes of plain characters, which nginx decodes, and of others it re-encodes.
	"/v2/%61pp", "/api/v2.0/projects/p/repositories/r/artifacts/sha256%3Aabc", "/a%7Eb", "/a%41", "/a%2d",
	"/a%20b", "/a%3Fb", "/a%3fb", "/a%23b", "/a%C3%A9", "/a%c3%a9", "/a%22b", "/a%3Cb%3E", "/a%7Bb%7D",
	"/a%5B0%5D", "/a%2B", "/a%26", "/a%3D", "/a%40",
	// Invalid escapes, NUL and control characters.
	"/a%zz", "/a%4", "/a%", "/a%00b", "/a%0Ab", "/a%7f", "/a%1F",
	// Literal characters outside the path set (those a request line can carry).
	"/a\"b", "/a{b}", "/a|b", "/a^b", "/a`b", "/a<b>", "/a[0]", "/a\xc3\xa9", "/a\x80",
}

// Every path CanonicalPath accepts, nginx forwards exactly as it is: so the path the proxy
// checked is the path Harbor's core routes on. Every path nginx would rewrite is refused.
func TestCanonicalPathAgainstNginx(t *testing.T) {
	accepted := 0
	for _, p := range append(canonicalCases, randomTargets(600, false)...) {
		got, forwarded, status := viaNginx(t, p)
		if _, err := policies.CanonicalPath(p); err != nil {
			continue // refused: whatever nginx makes of it never goes upstream
		}
		accepted++
		if !forwarded {
			t.Errorf("CanonicalPath accepts %q, but nginx answers %d itself", p, status)
			continue
		}
		if got != p {
			t.Errorf("CanonicalPath accepts %q, but nginx forwards %q", p, got)
		}
	}
	if accepted < 20 {
		t.Errorf("only %d canonical paths were tried", accepted)
	}
}

// The issue's attack, on the real front: a path under /api/v2.0/ reaches the token service.
func TestNginxResolvesTheIssuesPaths(t *testing.T) {
	for _, p := range []string{"/api/v2.0/../../service/token", "/api/v2.0/%2e%2e/%2e%2e/service/token", "/api/v2.0/..%2F..%2Fservice/token"} {
		got, forwarded, _ := viaNginx(t, p+"?service=harbor-registry&scope=repository:team/app:pull,push")
		if !forwarded || got != "/service/token?service=harbor-registry&scope=repository:team/app:pull,push" {
			t.Errorf("%q: nginx forwarded %q (forwarded=%v), want /service/token with the query", p, got, forwarded)
		}
	}
	got, _, _ := viaNginx(t, "/api/v2.0/projects/p/repositories/a%252Fb/artifacts")
	if got != "/api/v2.0/projects/p/repositories/a%252Fb/artifacts" {
		t.Errorf("Harbor's twice-encoded repository name reached core as %q", got)
	}
}

// The test Harbor routes on what Harbor's core would receive from nginx: its imitation of
// nginx's normalisation agrees with nginx on every case and on random targets (with queries
// and fragments).
func TestTestHarborNormalisesLikeNginx(t *testing.T) {
	targets := append(append([]string{}, canonicalCases...), randomTargets(1500, true)...)
	targets = append(targets, "/a?b", "/a?", "/a?b#c", "/a#b?c", "/a/..?b", "/a/.?b", "/a/.#b", "/a/..#b", "/%3F?x", "/a?x=%2e%2e/..",
		"/a\x01b", "/a\x7fb", "/a\x00b", "/a?b\x01")
	for _, target := range targets {
		got, forwarded, status := viaNginx(t, target)
		want, ok := testharbor.NginxUpstreamURI(target)
		switch {
		case forwarded != ok:
			t.Errorf("%q: nginx forwarded=%v (status %d, %q), test Harbor ok=%v (%q)", target, forwarded, status, got, ok, want)
		case forwarded && got != want:
			t.Errorf("%q: nginx forwards %q, test Harbor routes on %q", target, got, want)
		case !forwarded && status != http.StatusBadRequest:
			t.Errorf("%q: nginx answered %d, the test Harbor would answer 400", target, status)
		}
	}
}

// randomTargets builds request targets from the pieces that matter to nginx's parser (dots,
// slashes, escapes of separators, dots, '%' and '?', backslashes, Harbor's %252F), with a fixed
// seed so a failure reproduces. With query, '?' and '#' may appear too.
func randomTargets(n int, query bool) []string {
	pieces := []string{"/", "/", "/", ".", ".", "..", "a", "b", "api", "v2.0", "%2e", "%2E", "%2f", "%2F", "%5c", "\\",
		"%25", "%252F", "%252f", "%41", "%3f", "%3F", "%23", "%20", "%00", "%e9", "%", "%4", "~", ";", "+", ":", "\xe9", "%zz"}
	if query {
		pieces = append(pieces, "?", "?", "#", "=", "&")
	}
	r := rand.New(rand.NewPCG(12, 7))
	out := make([]string, 0, n)
	for range n {
		var b strings.Builder
		b.WriteByte('/')
		for range 1 + r.IntN(8) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		out = append(out, b.String())
	}
	return out
}
