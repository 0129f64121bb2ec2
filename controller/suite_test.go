package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/controller"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/test/capture"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/kube"
)

// The suite runs one real API server, one manager with the reconciler, a plain-HTTP and a TLS
// test Harbor, and a stand-in for the proxy's readiness endpoint (the proxy is a later part).
var (
	env        *envtest.Environment
	cfg        *rest.Config
	k8s        client.Client
	harbor     *testharbor.Server
	harborTLS  *testharbor.Server
	proxyReady atomic.Bool
	proxySrv   *httptest.Server
	logs       = &capture.Buffer{}
)

const (
	proxyAddress = "https://connectors-proxy.connectors-system.svc"
	// probeInterval is short so the periodic re-probe is observable; failures retry only after
	// an hour, so every recovery the tests see comes from the Secret watch.
	probeInterval = 2 * time.Second
	retryInterval = time.Hour
	// credentialsNS is where the manager keeps its copies of the Connectors' credentials (the
	// install's namespace for them, which holds nothing else).
	credentialsNS = access.DefaultCredentialsNamespace
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	// Debug level: the most verbose the manager can be must still hold no credential.
	ctrl.SetLogger(zap.New(zap.WriteTo(logs), zap.Level(zapcore.Level(-5))))
	var err error
	if env, err = kube.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.Stop()
	cfg = env.Config
	if k8s, err = client.New(cfg, client.Options{Scheme: kube.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if harbor, err = testharbor.Start(testharbor.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer harbor.Close()
	if harborTLS, err = testharbor.Start(testharbor.Options{TLS: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer harborTLS.Close()

	proxyReady.Store(true)
	proxySrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !proxyReady.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer proxySrv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: kube.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts := controller.DefaultOptions()
	opts.ProxyAddress, opts.ProxyReadinessURL = proxyAddress, proxySrv.URL+"/readyz"
	opts.ProbeInterval, opts.RetryInterval = probeInterval, retryInterval
	// A probe that hangs fails well inside waitFor's 20 s.
	opts.ProbeTimeout = 3 * time.Second
	// No reuse of the proxy's answer: TestProxyReadiness flips the readiness and expects the
	// next reconcile to see it.
	opts.ProxyCheckCacheFor = 0
	r, err := controller.NewReconciler(mgr, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The copies of the Connectors' credentials the proxy reads, in their own namespace.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: credentialsNS}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := controller.NewCredentialsMirror(mgr, credentialsNS).SetupWithManager(ctx, mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	if code == 0 {
		if err := checkNoCredentialLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: credential leak:", err)
			code = 1
		}
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	return code
}

func startHarbor() (*testharbor.Server, error) { return testharbor.Start(testharbor.Options{}) }

// checkNoCredentialLeaks looks for every password the tests stored in a Secret in everything
// the manager wrote: its debug-level logs, every Event and every Connector's status.
func checkNoCredentialLeaks() error {
	var connectors v1alpha1.ConnectorList
	if err := k8s.List(context.Background(), &connectors); err != nil {
		return err
	}
	if len(connectors.Items) == 0 {
		return nil // a -run filter selected no envtest case: the manager wrote nothing to check
	}
	written := logs.String()
	if !strings.Contains(written, "probed connector") {
		return fmt.Errorf("the manager's logs were not captured, so the check would prove nothing")
	}
	var events corev1.EventList
	if err := k8s.List(context.Background(), &events); err != nil {
		return err
	}
	places := map[string]string{"manager logs": written}
	for _, e := range events.Items {
		places["event "+e.Namespace+"/"+e.Name] = e.Message
	}
	for _, c := range connectors.Items {
		b, _ := json.Marshal(c.Status)
		places["status of "+c.Namespace+"/"+c.Name] = string(b)
	}
	var leak error
	secretsUsed.Range(func(k, _ any) bool {
		for where, text := range places {
			if strings.Contains(text, k.(string)) {
				leak = fmt.Errorf("a password stored in a Secret appears in %s", where)
				return false
			}
		}
		return true
	})
	return leak
}
