// Package admission_test runs the webhooks the way a cluster does: the real API server calls
// them over TLS, selected by the Mutating- and ValidatingWebhookConfiguration in config/webhook
// (with the CA injected as cert-manager would), and the ValidatingAdmissionPolicy from the same
// folder is enforced.
package admission_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/webhook"
)

var (
	env  *envtest.Environment
	k8s  client.Client
	root string
)

// injection is the manager configuration this suite runs the webhook with.
var injection = policies.InjectionConfig{
	ForwardProxyURL: "http://10.88.0.1:3128",
	PullHost:        "127.0.0.1:5050",
	NoProxy:         []string{"10.96.0.0/12"},
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevelFromEnv())))
	var err error
	if root, err = clients.RepoRoot(); err != nil {
		return fail(err)
	}
	if env, err = kube.Start(kube.WithWebhooks("config/webhook/manifests.yaml", "config/webhook/validating.yaml")); err != nil {
		return fail(err)
	}
	defer env.Stop()
	if k8s, err = client.New(env.Config, client.Options{Scheme: kube.Scheme()}); err != nil {
		return fail(err)
	}
	if out, err := kubectl("apply", "--server-side", "-f", filepath.Join(root, "config", "webhook", "pull-host-policy.yaml")); err != nil {
		return fail(fmt.Errorf("%v: %s", err, out))
	}

	opts := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:        kube.Scheme(),
		Metrics:       metricsserver.Options{BindAddress: "0"},
		WebhookServer: crwebhook.NewServer(crwebhook.Options{Host: opts.LocalServingHost, Port: opts.LocalServingPort, CertDir: opts.LocalServingCertDir}),
	})
	if err != nil {
		return fail(err)
	}
	injector := &webhook.Injector{Config: injection}
	webhook.Register(mgr, injector)
	// For BenchmarkAdmissionLatency: the same handler and a no-op one, timed server side.
	mgr.GetWebhookServer().Register(benchPodsPath, timed(benchPodsPath, &crwebhook.Admission{Handler: &webhook.PodHandler{Injector: injector}}))
	mgr.GetWebhookServer().Register(benchNoopPath, timed(benchNoopPath, &crwebhook.Admission{Handler: noopHandler{}}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if err := waitForTLS(net.JoinHostPort(opts.LocalServingHost, strconv.Itoa(opts.LocalServingPort))); err != nil {
		return fail(err)
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fail(fmt.Errorf("informer caches did not sync"))
	}
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		return fail(err)
	}
	return code
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, err)
	return 1
}

func zapLevelFromEnv() zapcore.Level {
	if os.Getenv("WEBHOOK_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

func waitForTLS(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only waits for the listener; the API server verifies the certificate
		if err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook server at %s did not come up", addr)
}

func kubectl(args ...string) (string, error) {
	stdout, stderr, err := kube.Kubectl(env, args...)
	var out []byte
	for _, r := range []io.Reader{stdout, stderr} {
		if r != nil {
			b, _ := io.ReadAll(r)
			out = append(out, b...)
		}
	}
	return string(out), err
}

// namespace creates a namespace with the given labels and a Ready connector "harbor" in it
// pointing at harbor.example.com.
func namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "adm-", Labels: labels}}
	must(t, k8s.Create(context.Background(), ns))
	connector(t, ns.Name, "harbor", "https://harbor.example.com", true)
	return ns.Name
}

func connector(t *testing.T, ns, name, address string, ready bool) {
	t.Helper()
	c := &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassHarbor, Address: address},
	}
	must(t, k8s.Create(context.Background(), c))
	status, reason := metav1.ConditionFalse, v1alpha1.ReasonUnauthorized
	if ready {
		status, reason = metav1.ConditionTrue, v1alpha1.ReasonReady
	}
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: "set by the test"})
	must(t, k8s.Status().Update(context.Background(), c))
	// The webhook reads connectors from its cache; give the informer a moment (a miss would
	// also be served by the live read, so this only keeps the test deterministic).
	time.Sleep(50 * time.Millisecond)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
