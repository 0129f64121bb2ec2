//go:build e2e && !day2

package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/node"
)

// kubeletCredentialProvider is connectors-credential-provider as node bootstrap installs it
// (README "Per-pod pulls"): make e2e's kubelet runs with it, so every scenario also shows that a
// node without the pull identity label pulls per node as before. make e2e-day2 runs without it.
func kubeletCredentialProvider(ctx context.Context, work string) (*node.CredentialProvider, error) {
	bin := filepath.Join(work, "connectors-credential-provider")
	if err := node.BuildStatic(ctx, "./cmd/credential-provider", bin); err != nil {
		return nil, err
	}
	return &node.CredentialProvider{Name: "connectors-credential-provider", Binary: bin, Config: `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- name: connectors-credential-provider
  matchImages: ["` + pullHost + `"]
  defaultCacheDuration: "0s"
  apiVersion: credentialprovider.kubelet.k8s.io/v1
  tokenAttributes:
    serviceAccountTokenAudience: connectors-proxy
    cacheType: Token
    requireServiceAccount: true
`}, nil
}

// Per-pod pulls on the real node (README "Per-pod pulls"), with the kubelet configured with the
// credential provider: every pull through the node path is authorised for the pod that pulls,
// a static pod (no admission, no ServiceAccount) is refused where the same pod pulls per node,
// and an IfNotPresent pod of another ServiceAccount makes the kubelet ask the proxy again.
func TestPerPodPulls(t *testing.T) {
	ctx := context.Background()
	// An image of its own (its config differs from app:v1's, so its ID does too): the kubelet's
	// pull records are per image, and no other scenario may have pulled this one.
	perPodImage, err := node.BuildImage(node.BusyboxFiles(), []string{"/bin/sh"}, []string{"E2E_IMAGE=per-pod"})
	require.NoError(t, err)
	require.NoError(t, w.pushToHarbor(ctx, perPodImage, harborRef("perpod:v1")))
	setPullIdentity(t, policies.PullIdentityPod)

	// 1. An entitled Job pulls, authorised for its pod.
	entitled := runJob(t, jobSpec{namespace: nsA, name: "per-pod", image: harborRef("perpod:v1"), connector: connectorName, script: "echo pulled-per-pod"})
	require.True(t, entitled.succeeded, "events:\n%s\nlogs:\n%s", entitled.events, entitled.logs)
	requireAudit(t, `"pullIdentity":"pod"`, `"pullingPod":"`+nsA+"/"+entitled.pod.Name+`"`, `"repository":"`+project+`/perpod"`, `"status":200`)

	// 2. KubeletEnsureSecretPulledImages: the image is on the node, pulled with the entitled pod's
	// credential. An IfNotPresent pod of another ServiceAccount (its image written as the node
	// path by hand, which admission allows for a pod with the connector's annotation that opts out
	// of the image rewrite) makes the kubelet pull again, with that pod's own token.
	require.NoError(t, w.node.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "second"}}))
	second := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "second-sa", Annotations: map[string]string{
			policies.AnnotationConnector: connectorName, policies.AnnotationInject: "volume,env"}},
		Spec: corev1.PodSpec{ServiceAccountName: "second", RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
			Name: "main", Image: nodeRef("perpod:v1"), ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"/bin/sh", "-c", "echo second-sa-ran"}}}},
	}
	require.NoError(t, w.node.Client.Create(ctx, second))
	t.Cleanup(func() { _ = w.node.Client.Delete(context.Background(), second) })
	res := awaitPod(t, second, 3*time.Minute)
	require.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	assert.Equal(t, corev1.PullIfNotPresent, res.pod.Spec.Containers[0].ImagePullPolicy)
	requireAudit(t, `"pullIdentity":"pod"`, `"pullingPod":"`+nsA+`/second-sa"`, `"pullingServiceAccount":"`+nsA+`/second"`, `"repository":"`+project+`/perpod"`)
	// ... and a static pod with IfNotPresent, which no credential covers, is asked for one.
	unentitled := staticPod(t, "static-if-not-present", nodeRef("perpod:v1"), corev1.PullIfNotPresent)
	events := waitStaticPod(t, unentitled, "Failed")
	assert.Regexp(t, `(?i)ErrImagePull|failed to pull`, events)

	// 3. A static pod naming the rewritten image never passed admission and has no ServiceAccount:
	// the kubelet has no credential for it, and the proxy refuses the pull, while an entitled
	// pod on the same node (a long-running one, which the per-node rule would count) runs.
	// Cleanups run last-in first-out: this one waits, after createJob's deletes the Job, until
	// the running pod is gone, while the CSI driver that must unmount its volume still runs.
	t.Cleanup(func() {
		_ = waitFor(context.Background(), time.Minute, func() (bool, error) {
			var pods corev1.PodList
			err := w.node.Client.List(context.Background(), &pods, client.InNamespace(nsA), client.MatchingLabels{"batch.kubernetes.io/job-name": "holder"})
			return err == nil && len(pods.Items) == 0, err
		}, nil)
	})
	holder := createJob(t, jobSpec{namespace: nsA, name: "holder", image: w.appImage(), connector: connectorName, script: "echo holding; trap 'exit 0' TERM; sleep 600 & wait", deadline: 12 * time.Minute,
		mutate: func(j *batchv1.Job) { j.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr(int64(1)) }})
	require.NoError(t, waitFor(ctx, 3*time.Minute, func() (bool, error) {
		pod, ok := jobPod(ctx, t, holder)
		return ok && pod.Status.Phase == corev1.PodRunning, nil
	}, func() string { return "the holder pod never ran: " + podSummary(ctx, w.node.Client, nsA) }))
	refused := staticPod(t, "static-per-pod", nodeRef("app:v1"), corev1.PullAlways)
	events = waitStaticPod(t, refused, "Failed")
	t.Logf("the static pod's events on a node that pulls per pod:\n%s", events)
	assert.Regexp(t, `(?i)ErrImagePull|failed to pull`, events)
	assert.Regexp(t, `(?i)401|unauthorized|authorization failed|no basic auth credentials`, events, "the pull was refused for want of the pod's credential")
	requireAudit(t, `"pullIdentity":"node"`, `"status":401`, `"repository":"`+project+`/app"`)

	// 4. The reason for the per-node mode's limit: on a node without the label, the same static
	// pod pulls, justified by the holder.
	setPullIdentity(t, "")
	allowed := staticPod(t, "static-per-node", nodeRef("app:v1"), corev1.PullAlways)
	events = waitStaticPod(t, allowed, "Started")
	assert.Contains(t, events, "Pulled")
}

// setPullIdentity labels the node (value "" removes the label) and waits until the proxy acts
// on it: a pull without a credential is challenged exactly when the node pulls per pod.
func setPullIdentity(t *testing.T, value string) {
	t.Helper()
	ctx := context.Background()
	apply := func(value string) {
		var n corev1.Node
		require.NoError(t, w.node.Client.Get(ctx, client.ObjectKey{Name: w.node.Name}, &n))
		patch := client.MergeFrom(n.DeepCopy())
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		if value == "" {
			delete(n.Labels, policies.LabelPullIdentity)
		} else {
			n.Labels[policies.LabelPullIdentity] = value
		}
		require.NoError(t, w.node.Client.Patch(ctx, &n, patch))
	}
	apply(value)
	t.Cleanup(func() { apply("") })
	require.NoError(t, waitFor(ctx, 30*time.Second, func() (bool, error) {
		resp, err := httpGet("http://" + pullHost + "/v2/" + nodeRepository("app") + "/manifests/v1")
		if err != nil {
			return false, nil
		}
		return (resp == 401) == (value == policies.PullIdentityPod), nil
	}, func() string { return "the proxy never acted on the node's pull identity label " + value }))
}

// staticPod writes a static pod manifest (namespace A, one container running image) into the
// kubelet's static pod directory; the kubelet names it <name>-<node>.
func staticPod(t *testing.T, name, image string, policy corev1.PullPolicy) string {
	t.Helper()
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: %q, imagePullPolicy: %s, command: ["/bin/sh", "-c", "echo static-pod-ran"]}
`, name, nsA, image, policy)
	file := filepath.Join(w.node.StaticPodDir, name+".yaml")
	require.NoError(t, os.WriteFile(file, []byte(manifest), 0o644))
	t.Cleanup(func() { _ = os.Remove(file) })
	return name + "-" + w.node.Name
}

// waitStaticPod waits for an event of reason on the static pod (its mirror pod may be refused
// by admission; the kubelet's events still name it) and returns all its events.
func waitStaticPod(t *testing.T, pod, reason string) string {
	t.Helper()
	ctx := context.Background()
	var lines []string
	err := waitFor(ctx, 3*time.Minute, func() (bool, error) {
		var events corev1.EventList
		if err := w.node.Client.List(ctx, &events, client.InNamespace(nsA)); err != nil {
			return false, err
		}
		lines = lines[:0]
		found := false
		for _, e := range events.Items {
			if e.InvolvedObject.Name == pod {
				lines = append(lines, e.Reason+": "+e.Message)
				found = found || e.Reason == reason
			}
		}
		return found, nil
	}, func() string { return fmt.Sprintf("no %s event for static pod %s; its events: %v", reason, pod, lines) })
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

// requireAudit waits for a proxy audit line holding every fragment.
func requireAudit(t *testing.T, fragments ...string) {
	t.Helper()
	ctx := context.Background()
	var logs string
	err := waitFor(ctx, 30*time.Second, func() (bool, error) {
		logs = proxyLogs(ctx, t)
		for _, line := range strings.Split(logs, "\n") {
			if containsAll(line, fragments) {
				return true, nil
			}
		}
		return false, nil
	}, func() string {
		return fmt.Sprintf("no audit line with %v; node pull lines:\n%s", fragments, strings.Join(regexp.MustCompile(`(?m)^.*"pullIdentity".*$`).FindAllString(logs, -1), "\n"))
	})
	require.NoError(t, err)
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// proxyLogs are the central proxy pods' logs.
func proxyLogs(ctx context.Context, t *testing.T) string {
	var pods corev1.PodList
	require.NoError(t, w.node.Client.List(ctx, &pods, client.InNamespace(productNS), client.MatchingLabels{"app.kubernetes.io/name": "connectors-proxy"}))
	var out strings.Builder
	for i := range pods.Items {
		out.WriteString(podLogs(ctx, &pods.Items[i], ""))
	}
	return out.String()
}

// httpGet is the status of a GET from the suite (which runs on the node).
func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
