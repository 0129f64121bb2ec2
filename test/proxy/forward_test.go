package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver"
	"github.com/alauda/harbor-connector/test/clients"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
)

// Build tools keep their image names (harbor.test:<port>/team/app) and use HTTPS_PROXY. Clients
// never proxy loopback targets, so this Harbor has a name (mapped to loopback by the proxy's
// dialer); team-a's connector "fwd" points at it, team-b's "fwdb" at the main Harbor.
var (
	fwdOnce   sync.Once
	fwdHarbor *testharbor.Server
	fwdErr    error
)

func forwardHarbor(t testing.TB) *testharbor.Server {
	t.Helper()
	fwdOnce.Do(func() {
		h, err := testharbor.Start(testharbor.Options{TLS: true, Hosts: []string{"harbor.test"}, ExternalHost: "harbor.test"})
		if err != nil {
			fwdErr = err
			return
		}
		trackHarbor(h)
		h.AddProject("team", false)
		robot, secret := h.AddRobot("team", "fwd", testharbor.ActionPull, testharbor.ActionPush)
		ctx := context.Background()
		if fwdErr = connectorWithSecret(ctx, nsA, "fwd", h.URL(), robot, secret, h.CACertPEM(), nil); fwdErr != nil {
			return
		}
		robotB, secretB := harbor.AddRobot("other", "fwdb")
		fwdErr = connectorWithSecret(ctx, nsB, "fwdb", harbor.URL(), robotB, secretB, harbor.CACertPEM(), nil)
		fwdHarbor = h
	})
	require.NoError(t, fwdErr)
	return fwdHarbor
}

// proxyEnv is the client environment: HTTPS_PROXY with <ns>%2F<connector> and a ServiceAccount
// token, and the interception CA as the only trust. No Harbor credential anywhere.
func proxyEnv(t testing.TB, token string) (home string, env []string) {
	home = t.TempDir()
	// An auth file without any credential (tools such as buildah insist on one existing).
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(workDir, "intercept-ca.crt")
	proxyURL := "http://" + url.PathEscape(nsA+"/fwd") + ":" + token + "@" + forwardAddr
	return home, []string{"HOME=" + home, "DOCKER_CONFIG=" + home, "HTTPS_PROXY=" + proxyURL, "SSL_CERT_FILE=" + ca, "PATH=/usr/bin:/bin"}
}

func runWith(t testing.TB, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(clients.Path(t, name), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestForwardRealClients(t *testing.T) {
	h := forwardHarbor(t)
	home, env := proxyEnv(t, saToken(t, nsA))
	ref := h.Host() + "/team/fwd:v1"
	require.True(t, strings.HasPrefix(ref, "harbor.test:"))

	out, err := runWith(t, env, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 128<<10), "-t", ref)
	require.NoError(t, err, out)
	digest, err := runWith(t, env, "crane", "digest", ref)
	require.NoError(t, err, digest)
	out, err = runWith(t, env, "crane", "pull", "--format", "oci", ref, filepath.Join(home, "img"))
	require.NoError(t, err, out)

	out, err = runWith(t, env, "regctl", "image", "copy", ref, h.Host()+"/team/fwd-regctl:v1")
	require.NoError(t, err, out)
	out, err = runWith(t, env, "regctl", "manifest", "digest", h.Host()+"/team/fwd-regctl:v1")
	require.NoError(t, err, out)
	assert.Equal(t, strings.TrimSpace(digest), strings.TrimSpace(out))

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "note.txt"), []byte("through HTTPS_PROXY"), 0o644))
	oras := exec.Command(clients.Path(t, "oras"), "push", h.Host()+"/team/fwd-oras:v1", "note.txt")
	oras.Dir, oras.Env = dir, env
	b, err := oras.CombinedOutput()
	require.NoError(t, err, string(b))
	pulled := t.TempDir()
	b2, err := runWith(t, env, "oras", "pull", "-o", pulled, h.Host()+"/team/fwd-oras:v1")
	require.NoError(t, err, b2)
	got, err := os.ReadFile(filepath.Join(pulled, "note.txt"))
	require.NoError(t, err)
	assert.Equal(t, "through HTTPS_PROXY", string(got))

	certDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(certDir, "ca.crt"), interceptCA.CertPEM, 0o644))
	out, err = runWith(t, env, "skopeo", "copy", "--src-cert-dir", certDir, "--dest-cert-dir", certDir,
		"docker://"+ref, "docker://"+h.Host()+"/team/fwd-skopeo:v1")
	require.NoError(t, err, out)
	out, err = runWith(t, env, "skopeo", "inspect", "--cert-dir", certDir, "docker://"+h.Host()+"/team/fwd-skopeo:v1")
	require.NoError(t, err, out)

	// A client that does not trust the interception CA fails TLS, as it should.
	untrusted := append([]string{}, env...)
	for i, e := range untrusted {
		if strings.HasPrefix(e, "SSL_CERT_FILE=") {
			untrusted[i] = "SSL_CERT_FILE=" + filepath.Join(workDir, "proxy-ca.crt")
		}
	}
	out, err = runWith(t, untrusted, "crane", "digest", ref)
	require.Error(t, err)
	assert.Contains(t, out, "certificate signed by unknown authority")
}

// goClient dials the forward proxy from a chosen loopback address (playing a pod with that IP).
func goClient(localIP string, proxy *url.URL) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyURL(proxy),
		DialContext:     dialer.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: interceptCA.Pool()},
	}}
}

func markedPod(t *testing.T, ns, name, ip, connector string, hostNetwork, marked bool) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{policies.AnnotationConnector: connector}},
		Spec:       corev1.PodSpec{HostNetwork: hostNetwork, NodeName: "node-1", Containers: []corev1.Container{{Name: "build", Image: "builder"}}},
	}
	if marked {
		pod.Labels = map[string]string{policies.LabelProxyInjected: "true"}
	}
	require.NoError(t, k8s.Create(ctx, pod))
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	require.NoError(t, k8s.Status().Update(ctx, pod))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), pod) })
	if marked {
		// The proxy identifies callers from its index of marked pods, by IP: wait until it holds
		// the pod with its status (a hostNetwork pod's address is its node's, so none is held for
		// it). An unmarked pod never reaches the index; the proxy refuses it after its own wait and
		// live lookup, which is what the tests check.
		require.NoError(t, waitProxyHasPod(ctx, pod, func(held *policies.MarkedPod) bool { return held.Phase == corev1.PodRunning }))
	}
	return pod
}

func manifestVia(c *http.Client, h *testharbor.Server, repo string) (int, error) {
	req, _ := http.NewRequest("GET", "https://"+h.Host()+"/v2/team/"+repo+"/manifests/v1", nil)
	req.Header.Set("Accept", manifestTypes)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Identity by source address: a running pod the webhook marked for the connector gets it; an
// unmarked pod, a hostNetwork pod, a deleted pod's address and another namespace's pod do not;
// and namespace B's token cannot name A's connector.
func TestForwardIdentity(t *testing.T) {
	h := forwardHarbor(t)
	_, env := proxyEnv(t, saToken(t, nsA))
	out, err := runWith(t, env, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 8<<10), "-t", h.Host()+"/team/ident:v1")
	require.NoError(t, err, out)
	anonymous := &url.URL{Scheme: "http", Host: forwardAddr}

	markedPod(t, nsA, "builder-a", "127.0.0.2", "fwd", false, true)
	status, err := manifestVia(goClient("127.0.0.2", anonymous), h, "ident")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status, "the marked pod of namespace A gets A's connector")

	markedPod(t, nsA, "unmarked", "127.0.0.3", "fwd", false, false)
	_, err = manifestVia(goClient("127.0.0.3", anonymous), h, "ident")
	require.Error(t, err, "an unmarked pod is not identified")
	assert.Contains(t, err.Error(), "Proxy Authentication Required")

	markedPod(t, nsA, "host-net", "127.0.0.4", "fwd", true, true)
	_, err = manifestVia(goClient("127.0.0.4", anonymous), h, "ident")
	require.Error(t, err, "a hostNetwork pod shares the node's address: never identified by it")

	gone := markedPod(t, nsA, "gone", "127.0.0.5", "fwd", false, true)
	status, err = manifestVia(goClient("127.0.0.5", anonymous), h, "ident")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, k8s.Delete(context.Background(), gone))
	require.Eventually(t, func() bool {
		_, err := manifestVia(goClient("127.0.0.5", anonymous), h, "ident")
		return err != nil
	}, 10*time.Second, 100*time.Millisecond, "a deleted pod's address no longer identifies anyone")

	markedPod(t, nsB, "builder-b", "127.0.0.6", "fwdb", false, true)
	_, err = manifestVia(goClient("127.0.0.6", anonymous), h, "ident")
	require.Error(t, err, "a pod of namespace B cannot reach A's connector host")

	withBToken := &url.URL{Scheme: "http", User: url.UserPassword(nsA+"/fwd", saToken(t, nsB)), Host: forwardAddr}
	_, err = manifestVia(goClient("127.0.0.1", withBToken), h, "ident")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Forbidden")

	withAToken := &url.URL{Scheme: "http", User: url.UserPassword(nsA+"/fwd", saToken(t, nsA)), Host: forwardAddr}
	status, err = manifestVia(goClient("127.0.0.1", withAToken), h, "ident")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status, "A's token names A's connector")
}

// connectStatus sends a raw CONNECT with A's token and returns the proxy's status line.
func connectStatus(t *testing.T, target string) string {
	t.Helper()
	conn, err := net.Dial("tcp", forwardAddr)
	require.NoError(t, err)
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target,
		basicUser(nsA+"/fwd", saToken(t, nsA)))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
	return line
}

func basicUser(user, pass string) string {
	req := &http.Request{Header: http.Header{}}
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// No SSRF: metadata, private, loopback and cluster addresses are refused; an allowed host is
// tunnelled untouched (the client sees the server's own certificate, no interception, no
// credential); with the deny policy even that is refused.
func TestForwardTunnelPolicy(t *testing.T) {
	forwardHarbor(t)
	for _, target := range []string{"169.254.169.254:80", "10.0.0.1:443", "127.0.0.1:" + strings.Split(harbor.Host(), ":")[1], "10.96.0.1:443"} {
		assert.Contains(t, connectStatus(t, target), "403", target)
	}

	// An "internal mirror" on the allow-list, serving TLS with its own certificate.
	mirrorCA, err := testcaNew("mirror CA")
	require.NoError(t, err)
	leaf, err := mirrorCA.Issue(allowedMirror)
	require.NoError(t, err)
	ln, err := tls.Listen("tcp", allowedMirror+":0", &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
	require.NoError(t, err)
	var sawAuth bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawAuth = sawAuth || r.Header.Get("Authorization") != ""
		_, _ = w.Write([]byte("mirror"))
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	proxy := &url.URL{Scheme: "http", User: url.UserPassword(nsA+"/fwd", saToken(t, nsA)), Host: forwardAddr}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{RootCAs: mirrorCA.Pool()}}}
	// Go clients do not proxy loopback targets; address the mirror by a name that resolves to it.
	forwardProxy.Resolve = func(ctx context.Context, host string) ([]net.IP, error) {
		if host == "mirror.test" {
			return []net.IP{net.ParseIP(allowedMirror)}, nil
		}
		return net.DefaultResolver.LookupIP(ctx, "ip", host)
	}
	t.Cleanup(func() { forwardProxy.Resolve = nil })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c.Transport.(*http.Transport).TLSClientConfig.ServerName = allowedMirror
	resp, err := c.Get("https://mirror.test:" + port + "/")
	require.NoError(t, err, "tunnelled to the allowed mirror; the mirror's own certificate verified")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "mirror", string(body))
	assert.False(t, sawAuth, "no credential is added to tunnelled traffic")

	// A public host under the default policy: "public.test" resolves to a public address, and
	// (this machine having no route to the internet) the tunnel's dial to that exact address is
	// delivered to the mirror. The client again sees the far end's own certificate.
	forwardProxy.Resolve = func(ctx context.Context, host string) ([]net.IP, error) {
		if host == "public.test" {
			return []net.IP{net.ParseIP("93.184.216.34")}, nil
		}
		return nil, fmt.Errorf("%s: no such host", host)
	}
	var dialled string
	dialTunnel := forwardProxy.DialTunnel
	forwardProxy.DialTunnel = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialled = addr
		_, p, _ := net.SplitHostPort(addr)
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(allowedMirror, p))
	}
	t.Cleanup(func() { forwardProxy.DialTunnel = dialTunnel })
	resp, err = c.Get("https://public.test:" + port + "/")
	require.NoError(t, err, "a public host is tunnelled under the default policy")
	resp.Body.Close()
	assert.Equal(t, "93.184.216.34:"+port, dialled, "the tunnel dials exactly the address it checked")
	assert.False(t, sawAuth)

	saved := forwardProxy.Tunnels
	forwardProxy.Tunnels.Mode = policies.TunnelDeny
	t.Cleanup(func() { forwardProxy.Tunnels = saved })
	assert.Contains(t, connectStatus(t, "mirror.test:"+port), "403", "deny refuses every non-connector tunnel")
	assert.Contains(t, connectStatus(t, "public.test:"+port), "403", "deny refuses public hosts too")
}

// Harbor API calls through the intercepted host (harbor-cli, curl) carry the connector's
// credentials; other Harbor paths (UI, login) are refused.
func TestForwardHarborAPI(t *testing.T) {
	h := forwardHarbor(t)
	proxy := &url.URL{Scheme: "http", User: url.UserPassword(nsA+"/fwd", saToken(t, nsA)), Host: forwardAddr}
	c := goClient("127.0.0.1", proxy)
	get := func(path string) (int, string) {
		resp, err := c.Get("https://" + h.Host() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("/api/v2.0/projects")
	assert.Equal(t, http.StatusOK, status, "the robot's credentials were added: %s", body)
	// Anonymous callers get 200 too (the public projects, none here): only the robot sees the
	// private project.
	assert.Contains(t, body, `"name":"team"`, "the robot's credentials were added: the private project is listed")
	status, _ = get("/api/v2.0/ping")
	assert.Equal(t, http.StatusOK, status, "Harbor's own answer passes through")
	for _, path := range []string{"/", "/c/login", "/harbor/projects"} {
		status, body = get(path)
		assert.Equal(t, http.StatusForbidden, status, path)
		assert.Contains(t, body, "only the registry API (/v2/) and Harbor's API (/api/v2.0/)")
	}
}

// buildah (containers/image, vfs storage) pulls and pushes through HTTPS_PROXY with the
// interception CA in a cert dir.
func TestForwardBuildah(t *testing.T) {
	h := forwardHarbor(t)
	_, env := proxyEnv(t, saToken(t, nsA))
	ref := h.Host() + "/team/fwd-buildah-src:v1"
	out, err := runWith(t, env, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 32<<10), "-t", ref)
	require.NoError(t, err, out)

	buildah := clients.Path(t, "buildah")
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	require.NoError(t, os.MkdirAll(certDir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(certDir, "ca.crt"), interceptCA.CertPEM, 0o644))
	run := func(args ...string) (string, error) {
		cmd := exec.Command(buildah, append([]string{"--storage-driver", "vfs", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run")}, args...)...)
		cmd.Env = env
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	out, err = run("pull", "--cert-dir", certDir, "docker://"+ref)
	require.NoError(t, err, out)
	out, err = run("push", "--cert-dir", certDir, ref, "docker://"+h.Host()+"/team/fwd-buildah:v1")
	require.NoError(t, err, out)
	out, err = runWith(t, env, "crane", "digest", h.Host()+"/team/fwd-buildah:v1")
	require.NoError(t, err, out)
}

// The TLS forward listener (3129): clients that send a token reach the proxy over TLS, so the
// token never crosses the network in the clear.
func TestForwardTLSListener(t *testing.T) {
	h := forwardHarbor(t)
	_, env := proxyEnv(t, saToken(t, nsA))
	out, err := runWith(t, env, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 8<<10), "-t", h.Host()+"/team/tlsfwd:v1")
	require.NoError(t, err, out)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := &proxyserver.Server{Listener: ln, Handler: forwardProxy, CertFile: filepath.Join(workDir, "proxy-tls", "tls.crt"), KeyFile: filepath.Join(workDir, "proxy-tls", "tls.key"), Log: logr.Discard()}
	go func() { _ = srv.Start(ctx) }()

	proxy := &url.URL{Scheme: "https", User: url.UserPassword(nsA+"/fwd", saToken(t, nsA)), Host: ln.Addr().String()}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{RootCAs: poolWith(proxyCA.CertPEM, interceptCA.CertPEM)}}}
	require.Eventually(t, func() bool {
		status, err := manifestVia(c, h, "tlsfwd")
		return err == nil && status == http.StatusOK
	}, 10*time.Second, 100*time.Millisecond)
}

// A pod's first request often arrives before the kubelet's status update with its address has
// reached the proxy: the proxy waits for it rather than refusing the pod.
func TestForwardIdentityBeforeStatusArrives(t *testing.T) {
	h := forwardHarbor(t)
	_, env := proxyEnv(t, saToken(t, nsA))
	out, err := runWith(t, env, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 1024), "-t", h.Host()+"/team/early:v1")
	require.NoError(t, err, out)
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "early", Labels: map[string]string{policies.LabelProxyInjected: "true"},
			Annotations: map[string]string{policies.AnnotationConnector: "fwd"}},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "build", Image: "builder"}}},
	}
	require.NoError(t, k8s.Create(ctx, pod))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), pod) })

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		status, err := manifestVia(goClient("127.0.0.7", &url.URL{Scheme: "http", Host: forwardAddr}), h, "early")
		done <- result{status, err}
	}()
	time.Sleep(300 * time.Millisecond) // the request is waiting for the address
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, PodIP: "127.0.0.7", PodIPs: []corev1.PodIP{{IP: "127.0.0.7"}}}
	require.NoError(t, k8s.Status().Update(ctx, pod))
	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusOK, r.status)
}
