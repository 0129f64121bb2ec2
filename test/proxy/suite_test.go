// Package proxy_test drives the registry proxy (reverse mode) with real clients against the test
// Harbor, with callers identified by real ServiceAccount tokens verified by the real API server.
package proxy_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/controller"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/proxyserver"
	"github.com/alauda/harbor-connector/proxyserver/podindex"
	"github.com/alauda/harbor-connector/test/capture"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/test/testca"
)

// The world: Harbor (TLS, private CA) with private projects "team" and "other"; namespace team-a
// owns connector "harbor" (robot of project team), team-b owns "harbor" too (robot of other).
// The proxy serves HTTPS on 127.0.0.1 with a certificate from its own CA.
var (
	env       *envtest.Environment
	k8s       client.Client
	clientset kubernetes.Interface
	harbor    *testharbor.Server
	proxyAddr string // host:port
	proxyCA   *testca.CA
	workDir   string
	logs      = &capture.Buffer{}
	responses = &capture.Buffer{} // every response's headers and body start, for leak checks
	secrets   sync.Map            // every Harbor password put in a Secret

	harborsMu sync.Mutex
	harbors   []*testharbor.Server // every Harbor started, for the leak check
)

func trackHarbor(h *testharbor.Server) *testharbor.Server {
	harborsMu.Lock()
	defer harborsMu.Unlock()
	harbors = append(harbors, h)
	return h
}

func allHarbors() []*testharbor.Server {
	harborsMu.Lock()
	defer harborsMu.Unlock()
	return append([]*testharbor.Server(nil), harbors...)
}

const (
	nsA, nsB = "team-a", "team-b"
	audience = "connectors-proxy"
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.Level(zapcore.DebugLevel)))
	var err error
	if workDir, err = os.MkdirTemp("", "proxy-test-"); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(workDir)
	if env, err = kube.Start(); err != nil {
		return fail(err)
	}
	defer env.Stop()
	if k8s, err = client.New(env.Config, client.Options{Scheme: kube.Scheme()}); err != nil {
		return fail(err)
	}
	if clientset, err = kubernetes.NewForConfig(env.Config); err != nil {
		return fail(err)
	}
	if harbor, err = testharbor.Start(testharbor.Options{TLS: true}); err != nil {
		return fail(err)
	}
	defer harbor.Close()
	trackHarbor(harbor)
	harbor.AddProject("team", false)
	harbor.AddProject("other", false)
	robotA, secretA := harbor.AddRobot("team", "ci", testharbor.ActionPull, testharbor.ActionPush, testharbor.ActionDelete)
	robotB, secretB := harbor.AddRobot("other", "ci")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, ns := range []string{productNS, credentialsNS} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fail(err)
		}
	}
	if err := kube.ApplyFiles(ctx, k8s, "config/proxy/role.yaml", "config/proxy/service_account.yaml",
		"config/rbac/role.yaml", "config/rbac/service_account.yaml", "config/rbac/role_binding.yaml"); err != nil {
		return fail(err)
	}
	// The manager's credentials mirror, run here as the manager's ServiceAccount with the RBAC
	// config/rbac gives it, copies each Connector's credentials into the credentials namespace,
	// where the proxy reads them.
	mirror, err := startMirror(ctx)
	if err != nil {
		return fail(err)
	}
	defer mirror()
	for ns, cred := range map[string][2]string{nsA: {robotA, secretA}, nsB: {robotB, secretB}} {
		if err := connectorWithSecret(ctx, ns, "harbor", harbor.URL(), cred[0], cred[1], harbor.CACertPEM(), nil); err != nil {
			return fail(err)
		}
	}

	if proxyCA, err = testca.New("connectors-proxy test CA"); err != nil {
		return fail(err)
	}
	leaf, err := proxyCA.Issue("127.0.0.1", "localhost")
	if err != nil {
		return fail(err)
	}
	certDir := filepath.Join(workDir, "proxy-tls")
	_ = os.MkdirAll(certDir, 0o700)
	_ = os.WriteFile(filepath.Join(certDir, "tls.crt"), leaf.CertPEM, 0o600)
	_ = os.WriteFile(filepath.Join(certDir, "tls.key"), leaf.KeyPEM, 0o600)
	_ = os.WriteFile(filepath.Join(workDir, "proxy-ca.crt"), proxyCA.CertPEM, 0o644)

	// The proxy runs as its own ServiceAccount with the RBAC config/proxy gives it (so it can read
	// no Secret but the manager's copies in the credentials namespace; startMirror keeps those).
	proxyConfig := kube.AsServiceAccount(env.Config, productNS, "connectors-proxy")
	proxyConfig.Wrap(proxyAPI.wrap) // TestHotPathMakesNoAPIRequestsPerRequest counts them
	mgr, err := ctrl.NewManager(proxyConfig, ctrl.Options{Scheme: kube.Scheme(),
		Metrics: metricsserver.Options{BindAddress: "0"}, Cache: proxyserver.CacheOptionsFor(credentialsNS)})
	if err != nil {
		return fail(err)
	}
	proxyView = mgr.GetClient()
	opts := proxyserver.DefaultOptions()
	opts.Dial = testDial
	opts.NodeForwarders = []string{forwarderNS + "/" + forwarderSA}
	opts.CredentialsNamespace = credentialsNS
	// A pull the registry restart stalls must be aborted well inside the 90 s client timeout
	// of TestRegistryRestartDuringPulls.
	opts.StallTimeout = 20 * time.Second
	// Unlimited: TestOneTokenFetchForConcurrentPulls sends 100 concurrent pulls as one
	// ServiceAccount, more than the install's per-identity limit (proxyserver tests the limits).
	opts.MaxStreamsPerIdentity, opts.MaxStreamsPerConnector = 0, 0
	handler, err := proxyserver.NewHandler(ctx, mgr, opts)
	if err != nil {
		return fail(err)
	}
	proxyPods = handler.MarkedPods()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	proxyAddr = ln.Addr().String()
	routes := proxyserver.Routes(captureResponses(handler), func() bool { return true })
	if err := mgr.Add(&proxyserver.Server{Listener: ln, Handler: routes, CertFile: filepath.Join(certDir, "tls.crt"), KeyFile: filepath.Join(certDir, "tls.key"), DrainTimeout: 5 * time.Second, Log: ctrl.Log}); err != nil {
		return fail(err)
	}
	if err := startForward(mgr, handler, opts.Forward); err != nil {
		return fail(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) || !toolscache.WaitForCacheSync(ctx.Done(), proxyPods.HasSynced) {
		return fail(fmt.Errorf("caches did not sync"))
	}
	if err := waitTLS(proxyAddr); err != nil {
		return fail(err)
	}
	code := m.Run()
	if code == 0 {
		if err := checkNoLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: leak:", err)
			code = 1
		}
	}
	cancel()
	<-done
	return code
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// testDial maps *.test host names to loopback, so TLS certificates and redirect hosts can carry
// real-looking names (harbor.test, s3.harbor.test) without touching /etc/hosts.
func testDial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && strings.HasSuffix(host, ".test") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
}

func waitTLS(addr string) error {
	pool := proxyCA.Pool()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool}); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("proxy at %s did not come up", addr)
}

// connectorWithSecret creates a namespace (if needed), a basic-auth Secret, a CA Secret and a
// Connector.
func connectorWithSecret(ctx context.Context, ns, name, address, user, pass string, ca []byte, annotations map[string]string) error {
	secrets.Store(pass, true)
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := k8s.Create(ctx, nsObj); err != nil && !strings.Contains(err.Error(), "already exists") {
		return err
	}
	connector := &v1alpha1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}, Spec: v1alpha1.ConnectorSpec{
		ConnectorClassName: v1alpha1.ClassHarbor, Address: address,
		Auth:            &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: name + "-robot"}},
		CACertSecretRef: &v1alpha1.LocalSecretReference{Name: name + "-ca"},
	}}
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "builder"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-robot"}, Type: corev1.SecretTypeBasicAuth,
			StringData: map[string]string{"username": user, "password": pass}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-ca"}, Data: map[string][]byte{"ca.crt": ca}},
		connector,
	} {
		if err := k8s.Create(ctx, obj); err != nil && !strings.Contains(err.Error(), "already exists") {
			return err
		}
	}
	// The proxy authorises with the namespaces' labels and finds the Connector in its informer
	// cache (the credentials it reads live, from the manager's copy): wait until it holds both,
	// this very Connector included, and until the copy made for it is there (holding the
	// credentials, or what is wrong with the Secrets).
	if err := waitProxySees(ctx, nsObj, nil); err != nil {
		return err
	}
	if err := waitProxySees(ctx, connector, nil); err != nil {
		return err
	}
	return waitCopy(ctx, connector, nil)
}

const (
	// productNS is where the install runs the manager and the proxy, their ServiceAccounts
	// included, and keeps the product's keys.
	productNS = "connectors-system"
	// credentialsNS is where the manager keeps its copies of connectors' credentials (and nothing
	// else is), the only namespace whose Secrets the proxy may read.
	credentialsNS = access.DefaultCredentialsNamespace
)

// startMirror runs the manager's credentials mirror (the controller that copies each Connector's
// credentials into credentialsNS) in a manager of its own, as the manager's ServiceAccount.
func startMirror(ctx context.Context) (stop func(), err error) {
	mgr, err := ctrl.NewManager(kube.AsServiceAccount(env.Config, productNS, "connectors-manager"), ctrl.Options{Scheme: kube.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, err
	}
	if err := controller.NewCredentialsMirror(mgr, credentialsNS).SetupWithManager(ctx, mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() { cancel(); <-done }, nil
}

// waitCopy waits until the manager's copy of c's credentials is the one made for the Connector
// as it now is (its uid and generation) and ok, if not nil, accepts it.
func waitCopy(ctx context.Context, c *v1alpha1.Connector, ok func(*corev1.Secret) bool) error {
	key := access.MirrorKey(credentialsNS, policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name})
	var last string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		var now v1alpha1.Connector
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(c), &now); err != nil {
			last = err.Error()
			return false, nil
		}
		var s corev1.Secret
		if err := k8s.Get(ctx, key, &s); err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("annotations %v", s.Annotations)
		return access.IsMirrorOf(&s, &now) && (ok == nil || ok(&s)), nil
	})
	if err != nil {
		return fmt.Errorf("the manager did not copy connector %s/%s's credentials: %v (last: %s)", c.Namespace, c.Name, err, last)
	}
	return nil
}

// proxyView is the reader the proxy under test takes Connectors, Namespaces and Node metadata
// from: its manager's client, served by the manager's informer cache (NewHandler is given the
// same one); proxyPods is its index of marked pods. The suite's own client k8s reads the API
// server directly, so an object it can Get may still be unknown to the proxy. Nil until the
// proxy exists: objects made before then are in the initial lists, which run awaits.
var (
	proxyView client.Reader
	proxyPods *podindex.Index
)

// waitProxyHasPod waits until the proxy's index of marked pods holds pod (its UID) and ready,
// if not nil, accepts what it holds.
func waitProxyHasPod(ctx context.Context, pod *corev1.Pod, ready func(*policies.MarkedPod) bool) error {
	return pollProxy(ctx, fmt.Sprintf("marked pod %s/%s", pod.Namespace, pod.Name), func(context.Context) string {
		held := proxyPods.Get(pod.Namespace, pod.Name)
		switch {
		case held == nil:
			return "not held"
		case pod.UID != "" && held.UID != pod.UID:
			return earlierObject(held.UID, pod.UID)
		case ready != nil && !ready(held):
			return fmt.Sprintf("not the expected state yet: %+v", *held)
		}
		return ""
	})
}

// waitProxySees waits until the proxy's informer cache holds obj (the same object: its UID, when
// obj came back from a Create) and ready, if not nil, accepts the cached copy. It polls the cache
// the proxy reads, so it returns as soon as the watch event has arrived and never sleeps longer.
func waitProxySees(ctx context.Context, obj client.Object, ready func(cached client.Object) bool) error {
	if proxyView == nil {
		return nil
	}
	key := client.ObjectKeyFromObject(obj)
	cached := obj.DeepCopyObject().(client.Object)
	return pollProxy(ctx, fmt.Sprintf("%T %s", obj, key), func(ctx context.Context) string {
		if err := proxyView.Get(ctx, key, cached); err != nil {
			return err.Error() // NotFound until the informer has it
		}
		if obj.GetUID() != "" && cached.GetUID() != obj.GetUID() {
			return earlierObject(cached.GetUID(), obj.GetUID())
		}
		if ready != nil && !ready(cached) {
			return fmt.Sprintf("the proxy's copy (resourceVersion %s) is not the expected state yet", cached.GetResourceVersion())
		}
		return ""
	})
}

// pollProxy polls what the proxy holds until missing returns "" (held, and in the expected
// state); missing says what is not there yet, and its last answer ends up in the error.
func pollProxy(ctx context.Context, what string, missing func(context.Context) string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		last = missing(ctx)
		return last == "", nil
	})
	if err != nil {
		return fmt.Errorf("the proxy did not get %s: %v (last: %s)", what, err, last)
	}
	return nil
}

func earlierObject(held, want types.UID) string {
	return fmt.Sprintf("the proxy still holds an earlier object of that name (UID %s, want %s)", held, want)
}

// saToken requests a real ServiceAccount token from the API server.
func saToken(t testing.TB, ns string, audiences ...string) string {
	t.Helper()
	if len(audiences) == 0 {
		audiences = []string{audience}
	}
	expiry := int64(3600)
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), "builder", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// prefix is the proxy-side repository prefix for a connector.
func prefix(ns, connector string) string {
	return proxyAddr + "/namespaces/" + ns + "/connectors/" + connector
}

// clientHome writes a Docker-style config.json holding only a ServiceAccount token for the
// proxy host, and the proxy's CA: everything a real client gets.
func clientHome(t testing.TB, token string) string {
	t.Helper()
	home := t.TempDir()
	cfg := map[string]any{"auths": map[string]any{proxyAddr: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("sa:" + token))}}}
	b, _ := json.Marshal(cfg)
	for _, p := range []string{filepath.Join(home, "config.json"), filepath.Join(home, ".docker", "config.json")} {
		_ = os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certs := filepath.Join(home, "certs")
	_ = os.MkdirAll(certs, 0o700)
	_ = os.WriteFile(filepath.Join(certs, "ca.crt"), proxyCA.CertPEM, 0o644)
	return home
}

// httpClient is a Go client trusting only the proxy's CA.
func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: proxyCA.Pool()}, MaxIdleConnsPerHost: 128},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func request(t testing.TB, method, path, token string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+proxyAddr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.SetBasicAuth("sa", token)
	}
	req.Header.Set("Accept", manifestTypes)
	resp, err := httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// manifestTypes is the Accept header registry clients send for manifests.
const manifestTypes = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// captureResponses records every response's status, headers and first 64 KiB of body.
func captureResponses(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&capturingWriter{ResponseWriter: w}, r)
	})
}

type capturingWriter struct {
	http.ResponseWriter
	n int
}

func (c *capturingWriter) WriteHeader(code int) {
	fmt.Fprintf(responses, "%d %v\n", code, c.Header())
	c.ResponseWriter.WriteHeader(code)
}

func (c *capturingWriter) Write(p []byte) (int, error) {
	if c.n < 64<<10 {
		end := len(p)
		if end > 64<<10-c.n {
			end = 64<<10 - c.n
		}
		_, _ = responses.Write(p[:end])
		c.n += end
	}
	return c.ResponseWriter.Write(p)
}

func (c *capturingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *capturingWriter) Flush() { _ = http.NewResponseController(c.ResponseWriter).Flush() }

// checkNoLeaks: no response and no log line holds a Harbor password or a Harbor token.
func checkNoLeaks() error {
	captured, logged := responses.String(), logs.String()
	if !strings.Contains(logged, `"request"`) {
		return nil // a -run/-bench filter selected nothing the in-process proxy served
	}
	var leak error
	secrets.Range(func(k, _ any) bool {
		for where, text := range map[string]string{"a response": captured, "a log line": logged} {
			if strings.Contains(text, k.(string)) {
				leak = fmt.Errorf("a Harbor password appears in %s", where)
				return false
			}
		}
		return true
	})
	if leak != nil {
		return leak
	}
	var tokens []string
	for _, h := range allHarbors() {
		tokens = append(tokens, h.IssuedTokens()...)
		for _, sid := range h.IssuedSessions() {
			if strings.Contains(captured, sid) {
				return fmt.Errorf("a Harbor session cookie appears in a response")
			}
		}
	}
	for _, tok := range tokens {
		sig := tok[strings.LastIndex(tok, ".")+1:]
		for where, text := range map[string]string{"a response": captured, "a log line": logged} {
			if strings.Contains(text, sig) {
				return fmt.Errorf("a Harbor token appears in %s", where)
			}
		}
	}
	if strings.Contains(captured, `realm="harbor"`) || strings.Contains(captured, "service/token") {
		return fmt.Errorf("Harbor's WWW-Authenticate reached a client")
	}
	return nil
}

func connectorObj(ns, name string) *v1alpha1.Connector {
	return &v1alpha1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
