package admission_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/fixtures"
)

// The API server's answers name who refused: the pull-host admission policy, the mutating
// webhook or the validating webhook.
const (
	byPolicy    = "ValidatingAdmissionPolicy 'connectors-pull-host-requires-injection'"
	byValidator = `admission webhook "pod-status.connectors.cpaas.io" denied the request`
	byMutator   = `admission webhook "pods.namespace-opt-in.connectors.cpaas.io" denied the request`
	notMutated  = "points at the harbor-connector pull host, but the pod was not mutated by the connectors webhook"
)

func statusFor(refs ...string) string {
	return `{"connectors":["` + strings.Join(refs, `","`) + `"]}`
}

func rewritten(ns, connector string) string {
	return "127.0.0.1:5050/namespaces/" + ns + "/connectors/" + connector + "/team/app:v1"
}

func marked(ns, name, status string, images ...string) *corev1.Pod {
	p := pod(ns, name, nil, map[string]string{policies.AnnotationStatus: status}, images[0])
	for i, img := range images[1:] {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i+1), Image: img})
	}
	return p
}

// validations is how many requests the validating webhook answered, whatever the answer.
func validations() float64 {
	families, _ := metrics.Registry.Gather()
	total := 0.0
	for _, f := range families {
		if f.GetName() != "connectors_webhook_admissions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == "PodValidation" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

var policyActive sync.Once

// waitForPolicy waits until the API server enforces the pull-host policy (its informer picks
// the policy up a moment after the suite applied it).
func waitForPolicy(t *testing.T) {
	t.Helper()
	policyActive.Do(func() {
		ns := namespace(t, nil)
		require.Eventually(t, func() bool {
			err := k8s.Create(context.Background(), pod(ns, "probe", nil, nil, "localhost:5050/team/app"), client.DryRunAll)
			return err != nil && strings.Contains(err.Error(), byPolicy)
		}, 20*time.Second, 200*time.Millisecond, "the pull-host policy is never enforced")
	})
}

func addDebugContainer(ctx context.Context, p *corev1.Pod, image string) error {
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: fmt.Sprintf("debugger-%d", len(p.Spec.EphemeralContainers)), Image: image,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent,
	}})
	return k8s.SubResource("ephemeralcontainers").Update(ctx, p)
}

// Finding 3: a status annotation written by hand is checked like one the webhook wrote, in a
// namespace the mutating webhook never sees (no opt-in label), at CREATE, at UPDATE and through
// the ephemeral containers subresource.
func TestForgedStatusRefused(t *testing.T) {
	ctx := context.Background()
	waitForPolicy(t)
	victim := namespace(t, nil)
	ns := namespace(t, nil)

	t.Run("forged status at CREATE", func(t *testing.T) {
		err := k8s.Create(ctx, marked(ns, "forged", statusFor(victim+"/harbor"), rewritten(victim, "harbor")))
		require.Error(t, err)
		assert.Contains(t, err.Error(), byValidator)
		assert.Contains(t, err.Error(), "annotation connectors.cpaas.io/proxy-inject-status names connector "+victim+"/harbor: connector "+victim+"/harbor is not visible from namespace "+ns)

		err = k8s.Create(ctx, marked(ns, "forged-no-image", statusFor(victim+"/harbor"), "nginx"))
		require.Error(t, err, "the status alone is what the node pull listener trusts")
		assert.Contains(t, err.Error(), "is not visible from namespace "+ns)

		err = k8s.Create(ctx, marked(ns, "mismatch", statusFor(ns+"/harbor"), rewritten(ns, "harbor"), rewritten(victim, "harbor")))
		require.Error(t, err, "an image of a connector the status does not name")
		assert.Contains(t, err.Error(), byValidator)
		assert.Contains(t, err.Error(), `container "c1": image `+rewritten(victim, "harbor")+" points at connector "+victim+"/harbor through the pull host, but the pod's annotation connectors.cpaas.io/proxy-inject-status does not name that connector")

		err = k8s.Create(ctx, marked(ns, "spelling", statusFor(ns+"/harbor"), "localhost:5050/namespaces/"+ns+"/connectors/harbor/team/app:v1"))
		require.Error(t, err, "the pull host under another name")
		assert.Contains(t, err.Error(), "under another name (localhost:5050)")

		err = k8s.Create(ctx, marked(ns, "missing", statusFor(ns+"/nope"), "nginx"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "names connector "+ns+"/nope, which does not exist")

		err = k8s.Create(ctx, marked(ns, "garbage", "not json", "nginx"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is not the JSON the connectors webhook writes")
	})

	// A status naming the namespace's own connector is no escalation: the annotation could have
	// asked for it.
	own := marked(ns, "own", statusFor(ns+"/harbor"), rewritten(ns, "harbor"))
	require.NoError(t, k8s.Create(ctx, own))

	t.Run("forged status at UPDATE", func(t *testing.T) {
		p := own.DeepCopy()
		p.Annotations[policies.AnnotationStatus] = statusFor(ns+"/harbor", victim+"/harbor")
		err := k8s.Update(ctx, p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), byValidator)
		assert.Contains(t, err.Error(), "connector "+victim+"/harbor is not visible from namespace "+ns)

		p = own.DeepCopy()
		p.Spec.Containers[0].Image = rewritten(victim, "harbor")
		err = k8s.Update(ctx, p)
		require.Error(t, err)
		assert.Contains(t, err.Error(), byValidator)
		assert.Contains(t, err.Error(), "points at connector "+victim+"/harbor through the pull host")

		// Adding a status to a pod that had none.
		plain := pod(ns, "plain", nil, nil, "nginx")
		require.NoError(t, k8s.Create(ctx, plain))
		plain.Annotations = map[string]string{policies.AnnotationStatus: statusFor(victim + "/harbor")}
		err = k8s.Update(ctx, plain)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is not visible from namespace "+ns)
	})

	t.Run("ephemeral container naming another namespace's connector", func(t *testing.T) {
		p := &corev1.Pod{}
		require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(own), p))
		err := addDebugContainer(ctx, p, rewritten(victim, "harbor"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), byValidator)
		assert.Contains(t, err.Error(), `ephemeral container "debugger-0": image `+rewritten(victim, "harbor")+" points at connector "+victim+"/harbor")

		require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(own), p))
		require.NoError(t, addDebugContainer(ctx, p, "busybox"), "an ordinary debug container is fine")
		require.NoError(t, addDebugContainer(ctx, p, "127.0.0.1:5050/namespaces/"+ns+"/connectors/harbor/tools/debug:v1"), "one of the pod's own connector too")
	})

	t.Run("status changed through pods/status", func(t *testing.T) {
		p := &corev1.Pod{}
		require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(own), p))
		p.Annotations[policies.AnnotationStatus] = statusFor(victim + "/harbor")
		err := k8s.Status().Update(ctx, p)
		require.Error(t, err, "the status subresource can write annotations")
		assert.Contains(t, err.Error(), "is not visible from namespace "+ns)
	})
}

// The mutating webhook's output passes the validating webhook, and a connector deleted after
// the fact does not block the updates controllers make.
func TestMutatedPodPassesValidation(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	before := validations()
	p := pod(ns, "legit", nil, annotated, harborImage)
	p.Finalizers = []string{"batch.kubernetes.io/job-tracking"}
	require.NoError(t, k8s.Create(ctx, p))
	assertInjected(t, p.ObjectMeta, p.Spec, ns)
	assert.Equal(t, before+1, validations(), "the validating webhook saw the mutated pod")

	must(t, k8s.Delete(ctx, &v1alpha1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor"}}))
	require.Eventually(t, func() bool {
		return k8s.Create(ctx, pod(ns, "after-delete", nil, annotated, harborImage), client.DryRunAll) != nil
	}, 10*time.Second, 100*time.Millisecond)
	p.Finalizers = nil
	require.NoError(t, k8s.Update(ctx, p), "removing the finalizer passes both webhooks")
}

// Only Pods that carry the status annotation or aim an image at the pull host reach the
// validating webhook; of pods/status updates, only those changing the status annotation.
func TestValidatorSeesOnlyMarkedPods(t *testing.T) {
	ctx := context.Background()
	waitForPolicy(t)
	ns := namespace(t, nil)
	opted := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	before := validations()

	plain := pod(ns, "plain", nil, nil, "nginx")
	require.NoError(t, k8s.Create(ctx, plain))
	plain.Labels = map[string]string{"touched": "yes"}
	require.NoError(t, k8s.Update(ctx, plain))
	require.NoError(t, addDebugContainer(ctx, plain, "busybox"))
	require.NoError(t, k8s.Create(ctx, pod(ns, "gitlab", nil, nil, "gitlab.example.com:5050/group/app:v1")))
	require.NoError(t, k8s.Create(ctx, pod(ns, "private-ip", nil, nil, "10.0.0.5:5050/group/app:v1")))
	require.NoError(t, k8s.Create(ctx, pod(ns, "annotated-not-opted-in", nil, annotated, harborImage)), "not mutated: no status")
	require.NoError(t, k8s.Create(ctx, pod(opted, "opted-out", map[string]string{policies.LabelProxyInject: "false"}, annotated, harborImage)))
	assert.Equal(t, before, validations(), "none of these reach the validating webhook")

	// A marked pod's status updates (the kubelet's) do not reach it unless they change the
	// status annotation.
	p := pod(opted, "marked", nil, annotated, harborImage)
	require.NoError(t, k8s.Create(ctx, p))
	afterCreate := validations()
	assert.Equal(t, before+1, afterCreate, "a marked pod does")
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	require.NoError(t, k8s.Status().Update(ctx, p))
	assert.Equal(t, afterCreate, validations(), "a status update that keeps the status annotation is not sent")
}

// Finding 2 through the API server: an update of a mutated Pod that changes what the mutating
// webhook refuses is denied by it (before, it was admitted unchanged with a warning).
func TestUpdateChangingRefusedFieldsDenied(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, map[string]string{policies.LabelProxyInject: "true"})
	other := namespace(t, nil)
	p := pod(ns, "app", nil, annotated, harborImage)
	require.NoError(t, k8s.Create(ctx, p))
	assertInjected(t, p.ObjectMeta, p.Spec, ns)

	renamed := p.DeepCopy()
	renamed.Annotations[policies.AnnotationConnector] = other + "/harbor"
	err := k8s.Update(ctx, renamed)
	require.Error(t, err, "the connector annotation changed to one the namespace may not use")
	assert.Contains(t, err.Error(), byMutator)
	assert.Contains(t, err.Error(), "connector "+other+"/harbor is not visible from namespace "+ns)
	assert.Contains(t, err.Error(), "(this update changes annotation connectors.cpaas.io/connector;")

	moved := p.DeepCopy()
	moved.Spec.Containers[0].Image = rewritten(other, "harbor")
	err = k8s.Update(ctx, moved)
	require.Error(t, err, "an image moved to another namespace's rewritten path")
	assert.Contains(t, err.Error(), byMutator)
	assert.Contains(t, err.Error(), `this update changes the image of container "app"`)

	must(t, k8s.Delete(ctx, &v1alpha1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor"}}))
	require.Eventually(t, func() bool {
		return k8s.Create(ctx, pod(ns, "after-delete", nil, annotated, harborImage), client.DryRunAll) != nil
	}, 10*time.Second, 100*time.Millisecond)
	require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(p), p))
	injectChanged := p.DeepCopy()
	injectChanged.Annotations[policies.AnnotationInject] = "volume"
	err = k8s.Update(ctx, injectChanged)
	require.Error(t, err, "with the connector deleted, an update changing the inject annotation is denied")
	assert.Contains(t, err.Error(), "names connector "+ns+"/harbor, which does not exist")

	p.Labels = map[string]string{"touched": "yes"}
	require.NoError(t, k8s.Update(ctx, p), "an update changing none of them is still admitted unchanged")
}

// Finding 4: every spelling of the pull host is refused by the admission policy (the cheap
// first line, which runs before any webhook) on a Pod without the status annotation, at CREATE
// and through the ephemeral containers subresource, and the policy's CEL agrees with the Go rule
// on a table of images.
func TestPullHostSpellingsRefusedByPolicy(t *testing.T) {
	ctx := context.Background()
	waitForPolicy(t)
	ns := namespace(t, nil)
	rule, err := policies.NewPullHostRule(injection.PullHost)
	require.NoError(t, err)
	spellings := []string{
		"127.0.0.1:5050", "localhost:5050", "LOCALHOST:5050", "127.1:5050", "[::1]:5050", "127.0.0.2:5050",
		"0x7f000001:5050", "2130706433:5050", "0177.0.0.1:5050", "0.0.0.0:5050", "[::ffff:7f00:1]:5050",
		"node.localhost:5050", "127.0.0.1.nip.io:5050", "harbor.example.com", "localhost",
	}
	target := namespace(t, nil) // a namespace with a connector the pods must not reach
	for i, host := range spellings {
		image := host + "/namespaces/" + target + "/connectors/harbor/team/app:v1"
		t.Run(host, func(t *testing.T) {
			require.True(t, rule.AimsAtPullHost(image))
			err := k8s.Create(ctx, pod(ns, fmt.Sprintf("spelling-%d", i), nil, nil, image))
			require.Error(t, err, "CREATE")
			assert.Contains(t, err.Error(), byPolicy)
			assert.Contains(t, err.Error(), "image "+image+" "+notMutated)

			p := pod(ns, fmt.Sprintf("debug-%d", i), nil, nil, "nginx")
			require.NoError(t, k8s.Create(ctx, p))
			err = addDebugContainer(ctx, p, image)
			require.Error(t, err, "pods/ephemeralcontainers")
			assert.Contains(t, err.Error(), byPolicy)
			assert.Contains(t, err.Error(), "image "+image+" "+notMutated)
		})
	}

	t.Run("loopback spellings of the pull port, whatever the path", func(t *testing.T) {
		for i, host := range []string{"localhost:5050", "LOCALHOST:5050", "127.1:5050", "[::1]:5050", "127.0.0.2:5050", "0x7f000001:5050", "2130706433:5050"} {
			err := k8s.Create(ctx, pod(ns, fmt.Sprintf("port-%d", i), nil, nil, host+"/team/app:v1"), client.DryRunAll)
			require.Error(t, err, host)
			assert.Contains(t, err.Error(), byPolicy)
		}
	})

	// The same table as policies' unit test: the policy refuses exactly what the Go rule calls
	// aimed at the pull host (on a Pod without the status annotation).
	t.Run("CEL and Go agree", func(t *testing.T) {
		for image, want := range fixtures.PullHostSpellings {
			assert.Equal(t, want, rule.AimsAtPullHost(image), "Go rule: %s", image)
			err := k8s.Create(ctx, pod(ns, "agree", nil, nil, image), client.DryRunAll)
			if want {
				if assert.Error(t, err, image) {
					assert.Contains(t, err.Error(), byPolicy, image)
				}
			} else {
				assert.NoError(t, err, image)
			}
		}
	})
}
