package proxy_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver"
	"github.com/alauda/harbor-connector/test/images"
)

const (
	forwarderNS = "connectors-node"
	forwarderSA = "connectors-node"
	nodeName    = "node-1"
)

// nodeListener runs a node pull listener as the DaemonSet would on node-1: its own pod-bound
// token (which names the node) in a file, the central proxy's CA, plain HTTP on loopback.
type nodeListener struct {
	addr      string
	tokenFile string
}

func startNodeListener(t testing.TB, upstream string) *nodeListener {
	t.Helper()
	return startNodeListenerOn(t, upstream, nodeName)
}

// startNodeListenerOn runs the listener of another node.
func startNodeListenerOn(t testing.TB, upstream, nodeName string) *nodeListener {
	t.Helper()
	ctx := context.Background()
	_ = k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: forwarderNS}})
	_ = k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: forwarderNS, Name: forwarderSA}})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: forwarderNS, GenerateName: "connectors-node-"},
		Spec: corev1.PodSpec{ServiceAccountName: forwarderSA, NodeName: nodeName, HostNetwork: true,
			Containers: []corev1.Container{{Name: "node-pull", Image: images.CommittedImage("proxy")}}},
	}
	require.NoError(t, k8s.Create(ctx, pod))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), pod) })

	l := &nodeListener{tokenFile: filepath.Join(t.TempDir(), "token")}
	l.writeToken(t, pod)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	l.addr = ln.Addr().String()
	o := proxyserver.DefaultOptions().Node
	o.Upstream, o.TokenFile, o.CAFile = "https://"+upstream, l.tokenFile, filepath.Join(workDir, "proxy-ca.crt")
	// TestNodePullTokenRotation rewrites the token file and expects the next pulls to use it.
	o.Recheck = 50 * time.Millisecond
	fwd, err := proxyserver.NewNodeForwarder(o, ctrl.Log)
	require.NoError(t, err)
	srvCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- (&proxyserver.Server{Listener: ln, Handler: fwd, Log: ctrl.Log}).Start(srvCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// writeToken binds a fresh token of the listener's ServiceAccount to its pod, as the kubelet does.
func (l *nodeListener) writeToken(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	expiry := int64(600)
	tr, err := clientset.CoreV1().ServiceAccounts(forwarderNS).CreateToken(context.Background(), forwarderSA, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &expiry,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(l.tokenFile, []byte(tr.Status.Token), 0o600))
}

// image is how the webhook rewrites team-a's image for the node listener.
func (l *nodeListener) image(ns, connector, repo string) string {
	return l.addr + "/" + policies.ProxyPath(policies.ConnectorRef{Namespace: ns, Name: connector}) + "/team/" + repo + ":v1"
}

// workloadPod creates a pod as the webhook leaves it: marked, with the status annotation naming
// the connector and the rewritten image, scheduled on node.
func workloadPod(t testing.TB, ns, node, connector, image string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "app-",
			Labels:      map[string]string{policies.LabelProxyInjected: "true"},
			Annotations: map[string]string{policies.AnnotationConnector: connector, policies.AnnotationStatus: fmt.Sprintf(`{"connectors":[%q]}`, connector)}},
		// The ServiceAccount the suite creates in each namespace: per-pod pulls bind its token to the pod.
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "builder", Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	require.NoError(t, k8s.Create(context.Background(), pod))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), pod) })
	return pod
}

// Node pull: the listener on node-1 holds only its own token; the central proxy lets it read a
// repository only while a marked pod on node-1, in a namespace that may use the connector, names
// it. Pushes never leave the node.
func TestNodePull(t *testing.T) {
	pushSample(t, "nodeapp")
	l := startNodeListener(t, proxyAddr)
	home := t.TempDir() // no config.json: the runtime sends no credential of its own
	pull := func() (string, error) {
		return runClient(t, home, "crane", "manifest", l.image(nsA, "harbor", "nodeapp"))
	}

	out, err := pull()
	require.Error(t, err, "no pod on the node needs the image")
	assert.Contains(t, out, "DENIED")
	assert.Contains(t, out, "node node-1 may pull team/nodeapp through connector team-a/harbor only for a running pod on that node")

	other := workloadPod(t, nsA, "node-2", nsA+"/harbor", l.image(nsA, "harbor", "nodeapp"))
	out, err = pull()
	require.Error(t, err, "a pod on another node does not justify node-1's pull")
	assert.Contains(t, out, "DENIED")
	require.NoError(t, k8s.Delete(context.Background(), other))

	// Namespace B marks a pod with A's connector and image by hand: visibility still applies.
	forged := workloadPod(t, nsB, nodeName, nsA+"/harbor", l.image(nsA, "harbor", "nodeapp"))
	out, err = pull()
	require.Error(t, err, "a pod of namespace B cannot make node-1 pull through A's connector")
	assert.Contains(t, out, "DENIED")
	require.NoError(t, k8s.Delete(context.Background(), forged))

	// The pull is tried right after the pod is created: the proxy's cache may not have it yet,
	// and the live read must find it.
	app := workloadPod(t, nsA, nodeName, nsA+"/harbor", l.image(nsA, "harbor", "nodeapp"))
	out, err = pull()
	require.NoError(t, err, "a marked pod of namespace A on node-1 names the image: %s", out)
	assert.Contains(t, out, "schemaVersion")
	out, err = runClient(t, home, "crane", "manifest", l.image(nsA, "harbor", "iso"))
	require.Error(t, err, "only the repository the pod names")
	assert.Contains(t, out, "DENIED")

	// Pushes are refused on the node; the listener's token cannot push through the central proxy.
	out, err = runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 1024), "-t", l.image(nsA, "harbor", "nodeapp"))
	require.Error(t, err)
	assert.Contains(t, out, "serves pulls only")
	resp := request(t, "POST", pathA("nodeapp/blobs/uploads/"), readFile(t, l.tokenFile), nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, readOCIError(t, resp).Errors[0].Message, "may only read manifests and blobs")

	// A finished pod no longer justifies pulls.
	app.Status.Phase = corev1.PodSucceeded
	require.NoError(t, k8s.Status().Update(context.Background(), app))
	require.Eventually(t, func() bool {
		out, err := pull()
		return err != nil && strings.Contains(out, "DENIED")
	}, 10*time.Second, 100*time.Millisecond)
}

// The listener re-reads its token: after the kubelet rotates it, relayed pulls use the new one.
func TestNodePullTokenRotation(t *testing.T) {
	pushSample(t, "rotate")
	l := startNodeListener(t, proxyAddr)
	workloadPod(t, nsA, nodeName, nsA+"/harbor", l.image(nsA, "harbor", "rotate"))
	home := t.TempDir()
	_, err := runClient(t, home, "crane", "manifest", l.image(nsA, "harbor", "rotate"))
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(l.tokenFile, []byte("not-a-token"), 0o600))
	require.Eventually(t, func() bool {
		out, err := runClient(t, home, "crane", "manifest", l.image(nsA, "harbor", "rotate"))
		return err != nil && strings.Contains(out, "UNAUTHORIZED")
	}, 10*time.Second, 100*time.Millisecond, "the listener sends what the file holds now")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}
