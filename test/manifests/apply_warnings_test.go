package manifests_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/kube"
)

// fieldManager is the one applyDefault uses: a second manager of the same objects would
// conflict with it on atomic fields the API server defaults (a VAP's matchConstraints).
const fieldManager = "harbor-connector-test"

// warningCollector keeps every Warning header the API server sends.
type warningCollector struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningCollector) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningCollector) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

// warningClient is a client whose every Warning header lands in the returned collector.
func warningClient(t *testing.T) (client.Client, *warningCollector) {
	t.Helper()
	collected := &warningCollector{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = nil
	cfg.WarningHandlerWithContext = collected
	c, err := client.New(cfg, client.Options{Scheme: kube.Scheme()})
	require.NoError(t, err)
	return c, collected
}

// Installing config/default on the test bed's API server (the newest supported release by
// default, make test-matrix also the oldest) draws no Warning header: no deprecated API version,
// field, annotation or label, no unknown or duplicate field, nothing the API server would drop.
// An installer sees each such header as a "Warning:" line from kubectl. The objects are applied
// one by one, server-side, through client-go's warning handler (the file sorts before the other
// install tests, so on a plain `go test` run they are created here, not only updated), then all
// of them again with kubectl as a person installs.
func TestInstallDrawsNoWarnings(t *testing.T) {
	version, err := kube.K8sVersion()
	require.NoError(t, err)
	ctx := context.Background()
	objs := render(t, filepath.Join(root, "config", "default"))

	c, collected := warningClient(t)
	for _, obj := range objs {
		before := len(collected.list())
		err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(fieldManager), client.ForceOwnership)
		require.NoError(t, err, "%s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName())
		for _, w := range collected.list()[before:] {
			t.Errorf("Kubernetes %s warns about %s %s/%s (%s): %s", version, obj.GetKind(), obj.GetNamespace(), obj.GetName(), obj.GetAPIVersion(), w)
		}
	}
	require.NotEmpty(t, objs)

	// The handler does see warnings: a deprecated node label in a pod's nodeSelector (server
	// dry run) draws one.
	before := len(collected.list())
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "warning-probe", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"beta.kubernetes.io/arch": "amd64"},
			Containers:   []corev1.Container{{Name: "c", Image: "example.com/c:1"}},
		},
	}
	require.NoError(t, c.Create(ctx, probe, client.DryRunAll))
	assert.Len(t, collected.list()[before:], 1, "the probe's deprecated label draws a warning")

	out, err := kubectl(t, "apply", "--server-side", "--force-conflicts", "--field-manager="+fieldManager, "-k", filepath.Join(root, "config", "default"))
	require.NoError(t, err, out)
	assert.NotContains(t, out, "Warning:", "kubectl apply -k config/default on Kubernetes %s", version)
}
