//go:build e2e

package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
)

// The scenarios of issue 6. The token-refresh one takes over ten minutes of real time (the
// kubelet's minimum token lifetime), so it runs beside the others.
func TestOnARealNode(t *testing.T) {
	t.Run("5 a pod outlives its first token", func(t *testing.T) {
		t.Parallel()
		tokenRefresh(t)
	})
	// While scenario 5 waits out a token lifetime.
	t.Run("6 build tools", func(t *testing.T) {
		t.Parallel()
		buildTools(t)
	})
	t.Run("workloads", func(t *testing.T) {
		t.Parallel()
		t.Run("1 private image pulled through the node listener", privateImage)
		t.Run("2 crane pushes and pulls through HTTPS_PROXY", forwardPushPull)
		t.Run("3 crane pushes and pulls with config.json and the reverse address", reversePushPull)
		t.Run("4 namespace B cannot use namespace A's connector", crossNamespace)
	})
}

// reverseRef is an image name on the reverse proxy for namespace A's connector.
func reverseRef(repo string) string {
	return proxyService + "/" + policies.ProxyPath(policies.ConnectorRef{Namespace: nsA, Name: connectorName}) + "/" + project + "/" + repo
}

// nodeRef is what the webhook rewrites namespace A's images to.
func nodeRef(repo string) string {
	return pullHost + "/" + nodeRepository(repo)
}

// nodeRepository is the repository part of nodeRef, as the registry API's paths name it.
func nodeRepository(repo string) string {
	return policies.ProxyPath(policies.ConnectorRef{Namespace: nsA, Name: connectorName}) + "/" + project + "/" + repo
}

// pullHost is the node listener's address, which the webhook writes into rewritten images.
const pullHost = "127.0.0.1:5050"

// 1. The webhook rewrote the private image and the kubelet pulled it through the node listener;
// without the annotation the same image is refused by Harbor, so the credential came from the
// proxy.
func privateImage(t *testing.T) {
	res := runJob(t, jobSpec{namespace: nsA, name: "private-image", image: w.appImage(), connector: connectorName, script: "echo ran-from-the-private-image"})
	require.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	assert.Contains(t, res.logs, "ran-from-the-private-image")
	assert.Equal(t, nodeRef("app:v1"), res.pod.Spec.Containers[0].Image, "the webhook rewrote the image to the node listener")

	control := runJob(t, jobSpec{namespace: nsA, name: "private-image-plain", image: w.appImage(), script: "echo should-not-run"})
	require.False(t, control.succeeded, "an un-annotated pull of the private image must fail")
	assert.Equal(t, w.appImage(), control.pod.Spec.Containers[0].Image, "not rewritten without the annotation")
	// containerd 1.x said "401 Unauthorized"; 2.x says "pull access denied, ... authorization
	// failed: no basic auth credentials" (Harbor's 401 challenge, answered with nothing).
	assert.Regexp(t, `(?i)401 Unauthorized|unauthorized|pull access denied.*no basic auth credentials`, control.events, "Harbor refused the anonymous pull (not a TLS or network failure)")
}

// 2. crane keeps the original image name and uses only the injected env (HTTPS_PROXY without a
// credential, the CA directory on the CSI volume): the proxy identifies the pod by its address.
func forwardPushPull(t *testing.T) {
	ref := w.harborHost + "/" + project + "/forward:v1"
	push := runJob(t, jobSpec{namespace: nsA, name: "forward-push", image: w.craneImage(), connector: connectorName, script: fmt.Sprintf(
		`echo pushed-through-the-forward-proxy > f; tar -cf layer.tar f
crane append --oci-empty-base -f layer.tar -t %[1]s
crane digest %[1]s`, ref)})
	require.True(t, push.succeeded, "events:\n%s\nlogs:\n%s", push.events, push.logs)
	assert.Contains(t, push.logs, "sha256:")

	pull := runJob(t, jobSpec{namespace: nsA, name: "forward-pull", image: w.craneImage(), connector: connectorName, script: fmt.Sprintf(
		`crane export %s - | tar -xO f`, ref)})
	require.True(t, pull.succeeded, "events:\n%s\nlogs:\n%s", pull.events, pull.logs)
	assert.Contains(t, pull.logs, "pushed-through-the-forward-proxy")

	for _, res := range []jobResult{push, pull} {
		env := envOf(res.pod.Spec.Containers[0])
		assert.Equal(t, forwardURL, env["HTTPS_PROXY"], "the injected proxy URL carries no credential")
		assertNoCredential(t, res)
	}
}

// 3. The mounted config.json (a ServiceAccount token for the reverse host) and the mounted CA
// are all crane needs to push and pull through the reverse address. The volume is a tmpfs.
func reversePushPull(t *testing.T) {
	ref := reverseRef("reverse:v1")
	res := runJob(t, jobSpec{namespace: nsA, name: "reverse-push-pull", image: w.craneImage(), connector: connectorName, script: fmt.Sprintf(
		`test -s "$DOCKER_CONFIG/config.json"
# The files (the pod's token) are on the volume's own tmpfs, not the node's disk.
grep " $DOCKER_CONFIG " /proc/self/mountinfo | grep -q " - tmpfs connectors-csi " || { echo "$DOCKER_CONFIG is not the driver's tmpfs:"; grep " $DOCKER_CONFIG " /proc/self/mountinfo; exit 1; }
echo pushed-through-the-reverse-proxy > f; tar -cf layer.tar f
crane append --oci-empty-base -f layer.tar -t %[1]s
crane export %[1]s - | tar -xO f`, ref)})
	require.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	assert.Contains(t, res.logs, "pushed-through-the-reverse-proxy")
	assertNoCredential(t, res)
}

// 4. Namespace B naming A's connector is denied at admission; a pod of B that hand-writes A's
// proxy path with B's own token, or names A's image on the node listener, is refused.
func crossNamespace(t *testing.T) {
	ctx := context.Background()
	job := jobSpec{namespace: nsB, name: "borrow", image: w.appImage(), connector: nsA + "/" + connectorName, script: "true"}.build()
	err := w.node.Client.Create(ctx, job)
	require.Error(t, err, "admission must deny B's Job naming A's connector")
	assert.Contains(t, err.Error(), "not visible from namespace team-b")

	// B's own pod, not injected: a token for the proxy's audience that it mounted itself, A's
	// path written by hand, then the forward proxy without any credential.
	probe := runJob(t, jobSpec{namespace: nsB, name: "handwritten", image: localCraneImage, pullPolicy: corev1.PullNever,
		script: fmt.Sprintf(`mkdir -p cfg
printf '{"auths":{"%[1]s":{"username":"sa","password":"%%s"}}}' "$(cat /var/run/b-token/token)" > cfg/config.json
if DOCKER_CONFIG=/work/cfg SSL_CERT_FILE=/var/run/proxy-ca/ca.crt crane digest %[2]s 2>reverse.err; then echo REVERSE-ALLOWED; fi
cat reverse.err
if HTTPS_PROXY=http://%[3]s crane digest %[4]s 2>forward.err; then echo FORWARD-ALLOWED; fi
cat forward.err`, proxyService, reverseRef("app:v1"), strings.TrimPrefix(forwardURL, "http://"), w.appImage()),
		mutate: func(j *batchv1.Job) { mountTokenAndCA(j) }})
	require.True(t, probe.succeeded, "events:\n%s\nlogs:\n%s", probe.events, probe.logs)
	assert.NotContains(t, probe.logs, "REVERSE-ALLOWED")
	assert.Contains(t, probe.logs, "DENIED")
	assert.Contains(t, probe.logs, "not visible from namespace team-b")
	assert.NotContains(t, probe.logs, "FORWARD-ALLOWED")
	assert.Contains(t, probe.logs, "Proxy Authentication Required")

	// B's pod naming A's rewritten image is refused at admission by the install's pull-host
	// policy (config/webhook/pull-host-policy.yaml): only pods the webhook mutated may.
	borrowed := jobSpec{namespace: nsB, name: "node-path", image: nodeRef("app:v1"), pullPolicy: corev1.PullAlways, script: "true"}.build()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: nsB, Name: "node-path"}, Spec: borrowed.Spec.Template.Spec}
	err = w.node.Client.Create(ctx, pod)
	require.Error(t, err, "admission must refuse B's pod naming A's rewritten image")
	assert.Contains(t, err.Error(), "points at the harbor-connector pull host, but the pod was not mutated by the connectors webhook")

	// What reaches the kubelet without admission (README "Limits and lifecycle") still meets
	// the central proxy: the node listener relays a pull that no pod on the node names, and the
	// proxy refuses it. The suite runs on the node, where the listener is.
	resp, err := http.Get("http://" + pullHost + "/v2/" + nodeRepository("unclaimed") + "/manifests/v1")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the central proxy refused the node listener's relay: %s", body)
	assert.Contains(t, string(body), "DENIED")

	// B's pod writing the CSI volume for A's connector by hand: the driver refuses the mount and
	// the pod's events say why.
	mount := jobSpec{namespace: nsB, name: "csi-borrow", image: localCraneImage, pullPolicy: corev1.PullNever, script: "echo should-not-run",
		mutate: func(j *batchv1.Job) {
			spec := &j.Spec.Template.Spec
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: policies.VolumeName, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
				Driver: policies.CSIDriverName, ReadOnly: ptr(true), VolumeAttributes: map[string]string{policies.CSIAttrConnectors: nsA + "/" + connectorName}}}})
			spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: policies.VolumeName, MountPath: policies.MountPath})
		}}.build()
	require.NoError(t, w.node.Client.Create(ctx, mount))
	t.Cleanup(func() {
		_ = w.node.Client.Delete(context.Background(), mount, client.PropagationPolicy(metav1.DeletePropagationBackground))
	})
	require.NoError(t, waitFor(ctx, 2*time.Minute, func() (bool, error) {
		pod, ok := jobPod(ctx, t, mount)
		return ok && strings.Contains(podEvents(ctx, t, pod), "FailedMount"), nil
	}, func() string { return "no FailedMount event for B's hand-written CSI volume" }))
	pod, _ = jobPod(ctx, t, mount)
	events := podEvents(ctx, t, pod)
	assert.Contains(t, events, "connector team-a/harbor is not visible from namespace team-b")
	assert.NotEqual(t, corev1.PodRunning, pod.Status.Phase)
}

// mountTokenAndCA gives a pod what any pod could mount for itself: a token of its own
// ServiceAccount for the proxy's audience, and the proxy's CA.
func mountTokenAndCA(j *batchv1.Job) {
	spec := &j.Spec.Template.Spec
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: "b-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
			ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "connectors-proxy", ExpirationSeconds: ptr(int64(600)), Path: "token"}}}}}},
		corev1.Volume{Name: "proxy-ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "proxy-ca"}}}},
	)
	c := &spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts,
		corev1.VolumeMount{Name: "b-token", MountPath: "/var/run/b-token", ReadOnly: true},
		corev1.VolumeMount{Name: "proxy-ca", MountPath: "/var/run/proxy-ca", ReadOnly: true})
}

// 5. The kubelet republishes the CSI volume with a fresh token before the first expires; a pod
// that reads its files when it needs them keeps working after the first token is refused.
func tokenRefresh(t *testing.T) {
	ref := reverseRef("refresh:v1")
	res := runJob(t, jobSpec{namespace: nsA, name: "token-refresh", image: w.craneImage(), connector: connectorName, deadline: 16 * time.Minute, script: fmt.Sprintf(
		`tok=/var/run/connectors/context.token
first=$(cat $tok); start=$(date +%%s)
while [ "$(cat $tok)" = "$first" ]; do sleep 5; done
echo "token re-rendered after $(( $(date +%%s) - start ))s"
while [ $(( $(date +%%s) - start )) -lt %[3]d ]; do sleep 5; done
mkdir -p old; printf '{"auths":{"%[1]s":{"username":"sa","password":"%%s"}}}' "$first" > old/config.json
if DOCKER_CONFIG=/work/old crane digest %[4]s 2>old.err; then echo FIRST-TOKEN-STILL-ACCEPTED; fi
grep -o 'UNAUTHORIZED[^"]*' old.err | head -1
echo still-works-after-refresh > f; tar -cf layer.tar f
crane append --oci-empty-base -f layer.tar -t %[2]s
crane export %[2]s - | tar -xO f`, proxyService, ref, tokenLifetime+expiryLeeway+30, reverseRef("app:v1"))})
	require.True(t, res.succeeded, "events:\n%s\nlogs:\n%s", res.events, res.logs)
	assert.Contains(t, res.logs, "token re-rendered after")
	assert.NotContains(t, res.logs, "FIRST-TOKEN-STILL-ACCEPTED", "the first token expired: the refresh was needed")
	assert.Contains(t, res.logs, "UNAUTHORIZED")
	assert.Contains(t, res.logs, "still-works-after-refresh")
	assertNoCredential(t, res)
}

// expiryLeeway is how long past its exp the API server still accepts a token: it validates
// claims with go-jose's default leeway of one minute (pkg/serviceaccount/claims.go).
const expiryLeeway = 60

func envOf(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

// assertNoCredential checks the pod object (spec, env, annotations) and its logs for the
// connector's Harbor password, in the clear or in a Basic pair.
func assertNoCredential(t *testing.T, res jobResult) {
	t.Helper()
	podJSON, err := json.Marshal(res.pod)
	require.NoError(t, err)
	basic := base64.StdEncoding.EncodeToString([]byte(w.robot + ":" + w.secret))
	for what, text := range map[string]string{"pod object": string(podJSON), "logs": res.logs, "events": res.events} {
		assert.False(t, strings.Contains(text, w.secret), "the Harbor password appears in the %s", what)
		assert.False(t, strings.Contains(text, basic), "the Harbor Basic credential appears in the %s", what)
	}
}
