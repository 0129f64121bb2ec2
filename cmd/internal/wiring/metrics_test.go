package wiring_test

import (
	"context"
	"crypto/tls"
	"flag"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/cmd/internal/wiring"
	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
)

// Every binary gets --metrics-bind-address and --metrics-secure, secure by default.
func TestMetricsFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	m := wiring.DefaultMetricsFlags(":8443")
	m.Bind(fs)
	require.NoError(t, fs.Parse(nil))
	assert.Equal(t, ":8443", m.BindAddress)
	assert.True(t, m.Secure)
	o := m.Options()
	assert.True(t, o.SecureServing)
	assert.NotNil(t, o.FilterProvider, "authentication and authorisation through the API server")

	require.NoError(t, fs.Parse([]string{"--metrics-secure=false", "--metrics-bind-address=0"}))
	o = m.Options()
	assert.Equal(t, "0", o.BindAddress)
	assert.False(t, o.SecureServing)
	assert.Nil(t, o.FilterProvider)
}

// A manager started with the binaries' metrics options, as the manager's and as the proxy's
// ServiceAccount under the RBAC config/default installs, serves /metrics over HTTPS: a request
// without a token is refused 401, a token of an account without the connectors-metrics-reader
// role 403, a token of one bound to it gets the metrics.
func TestMetricsNeedATokenAllowedToReadThem(t *testing.T) {
	env, err := kube.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	admin, err := client.New(env.Config, client.Options{Scheme: kube.Scheme()})
	require.NoError(t, err)
	applyRenderedRBAC(t, env.ControlPlane.KubeCtl().Run, admin)

	clientset, err := kubernetes.NewForConfig(env.Config)
	require.NoError(t, err)
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}))
	token := func(sa string) string {
		require.NoError(t, admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "monitoring", Name: sa}}))
		tr, err := clientset.CoreV1().ServiceAccounts("monitoring").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		require.NoError(t, err)
		return tr.Status.Token
	}
	prometheus, stranger := token("prometheus"), token("stranger")
	require.NoError(t, admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "connectors-metrics-prometheus"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "connectors-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "monitoring", Name: "prometheus"}},
	}))

	for _, account := range []string{"connectors-manager", "connectors-proxy"} {
		t.Run(account, func(t *testing.T) {
			addr := freeAddr(t)
			mgr, err := ctrl.NewManager(kube.AsServiceAccount(env.Config, "connectors-system", account), ctrl.Options{
				Scheme: kube.Scheme(), Metrics: wiring.MetricsOptions(addr, true), HealthProbeBindAddress: "0"})
			require.NoError(t, err)
			mctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- mgr.Start(mctx) }()
			t.Cleanup(func() { cancel(); <-done })

			get := func(bearer string) (int, string) {
				req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
				require.NoError(t, err)
				if bearer != "" {
					req.Header.Set("Authorization", "Bearer "+bearer)
				}
				// The endpoint's certificate is self-signed; the token is what is checked.
				c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
				resp, err := c.Do(req)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				if code, _ := get(""); code != 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			code, _ := get("")
			assert.Equal(t, http.StatusUnauthorized, code, "no token")
			code, body := get("not-a-token")
			assert.Equal(t, http.StatusUnauthorized, code, "a token the API server does not accept: %s", body)
			code, body = get(stranger)
			assert.Equal(t, http.StatusForbidden, code, "an account without the reader role: %s", body)
			code, body = get(prometheus)
			require.Equal(t, http.StatusOK, code, body)
			assert.Contains(t, body, "# HELP ")

			plain, err := http.Get("http://" + addr + "/metrics")
			if err == nil {
				plain.Body.Close()
				assert.NotEqual(t, http.StatusOK, plain.StatusCode, "no plain HTTP")
			}
		})
	}
}

// applyRenderedRBAC renders config/default with kubectl kustomize and creates its Namespaces,
// ServiceAccounts and RBAC objects: the accounts exactly as installed.
func applyRenderedRBAC(t *testing.T, run func(args ...string) (io.Reader, io.Reader, error), c client.Client) {
	t.Helper()
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	stdout, stderr, err := run("kustomize", filepath.Join(root, "config", "default"))
	if err != nil {
		b, _ := io.ReadAll(stderr)
		t.Fatalf("kubectl kustomize: %v: %s", err, b)
	}
	kinds := map[string]int{"Namespace": 0, "ServiceAccount": 1, "ClusterRole": 1, "Role": 1, "ClusterRoleBinding": 2, "RoleBinding": 2}
	var objs [3][]*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(stdout, 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err == io.EOF {
			break
		}
		require.NoError(t, err)
		u := &unstructured.Unstructured{Object: obj}
		if order, ok := kinds[u.GetKind()]; ok {
			objs[order] = append(objs[order], u)
		}
	}
	n := 0
	for _, group := range objs {
		for _, u := range group {
			require.NoError(t, c.Create(context.Background(), u), "%s %s", u.GetKind(), u.GetName())
			n++
		}
	}
	require.NotZero(t, n)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}
