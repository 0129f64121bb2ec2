//go:build e2e

package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/test/node"
)

const busybox = "localhost/e2e/busybox:1"

// TestNode starts a real node, runs a Job from an imported image with a ServiceAccount token
// mounted, reads its logs through the API server (which fetches them from the kubelet), and
// checks that Stop leaves nothing behind. Run it twice in a row: the second run proves the
// first cleaned up.
func TestNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// The host as it was before any node: a run that ended without Stop is reclaimed first (CI
	// once found ip_forward=1 left by a killed run, which Start then rightly restored to 0).
	require.NoError(t, node.ReclaimCrashed("hce2e0", t.Logf))
	ipForward := readFile(t, "/proc/sys/net/ipv4/ip_forward")

	// A TLS registry with its own CA, which the node is told to trust.
	registry, err := testharbor.Start(testharbor.Options{TLS: true})
	require.NoError(t, err)
	defer registry.Close()
	registry.AddProject("e2e", true)
	registry.AddUser("admin", "Harbor12345", true)
	caFile := filepath.Join(t.TempDir(), "registry-ca.pem")
	require.NoError(t, os.WriteFile(caFile, registry.CACertPEM(), 0o644))

	n, err := node.Start(ctx, node.Options{Log: t.Logf, RegistryCAs: map[string]string{registry.Host(): caFile}})
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			assert.NoError(t, n.Stop())
		}
	})

	// The node runs the test bed's Kubernetes release on the containerd built by node-deps.sh,
	// not a system one.
	var self corev1.Node
	require.NoError(t, n.Client.Get(ctx, client.ObjectKey{Name: n.Name}, &self))
	k8sVersion, err := kube.K8sVersion()
	require.NoError(t, err)
	containerdVersion, err := kube.Version("CONTAINERD_VERSION")
	require.NoError(t, err)
	assert.Equal(t, k8sVersion, self.Status.NodeInfo.KubeletVersion)
	assert.Equal(t, "containerd://"+strings.TrimPrefix(containerdVersion, "v"), "containerd://"+strings.TrimPrefix(strings.TrimPrefix(self.Status.NodeInfo.ContainerRuntimeVersion, "containerd://"), "v"))
	t.Logf("node %s: kubelet %s, runtime %s, kernel %s", n.Name, self.Status.NodeInfo.KubeletVersion, self.Status.NodeInfo.ContainerRuntimeVersion, self.Status.NodeInfo.KernelVersion)

	img, err := node.BuildImage(node.BusyboxFiles(), nil, nil)
	require.NoError(t, err)
	tarPath := filepath.Join(t.TempDir(), "busybox.tar")
	require.NoError(t, node.WriteTarball(img, busybox, tarPath))
	require.NoError(t, n.ImportImage(ctx, tarPath))
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(registry.CACertPEM()))
	pushed := registry.Host() + "/e2e/busybox:1"
	require.NoError(t, node.Push(ctx, img, pushed,
		remote.WithAuth(&authn.Basic{Username: "admin", Password: "Harbor12345"}),
		remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}})))

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				// The runtime's default seccomp profile (what Pod Security "restricted" requires):
				// runc must have been built with seccomp for the container to start, and the
				// container sees itself filtered (Seccomp: 2).
				SecurityContext: &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				Containers: []corev1.Container{{
					Name:            "smoke",
					Image:           busybox,
					ImagePullPolicy: corev1.PullNever,
					Command:         []string{"sh", "-c", "echo hello; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; grep '^Seccomp:' /proc/self/status"},
				}},
			}},
		},
	}
	require.NoError(t, n.Client.Create(ctx, job))

	// A pod whose image the kubelet pulls from the TLS registry, that reaches a server on the
	// host's bridge address (where the suite runs its proxies), and is still running when Stop
	// is called.
	host := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("from the host\n"))
	}))
	host.Listener, err = net.Listen("tcp", net.JoinHostPort(n.IP, "0"))
	require.NoError(t, err)
	host.Start()
	defer host.Close()
	sleeper := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: "default"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            "sleeper",
				Image:           pushed,
				ImagePullPolicy: corev1.PullAlways,
				Command:         []string{"sh", "-c", "wget -qO- " + host.URL + "/ && exec sleep 3600"},
			}},
		},
	}
	require.NoError(t, n.Client.Create(ctx, sleeper))

	// A pod reaches the API server as in-cluster clients do: the kubernetes Service's address
	// (routed by kube-proxy to the advertised node IP), verified with kube-root-ca.crt.
	apicheck := apiCheckJob(ctx, t, n, node.APIServiceIP+":443", "kubernetes.default.svc:443")
	require.NoError(t, n.Client.Create(ctx, apicheck))

	pod := waitForJob(ctx, t, n, job)
	logs, err := n.Clientset.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	require.NoError(t, err)
	assert.Equal(t, "hello\ndefault\nSeccomp:\t2", strings.TrimSpace(string(logs)), "the Job's output, read through the API server")

	pod = waitForJob(ctx, t, n, apicheck)
	logs, err = n.Clientset.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	require.NoError(t, err)
	assert.Equal(t, node.APIServiceIP+":443 "+k8sVersion+"\nkubernetes.default.svc:443 "+k8sVersion, strings.TrimSpace(string(logs)), "the API server as a pod reaches it, by address and by cluster DNS name")

	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		logs, err := n.Clientset.CoreV1().Pods("default").GetLogs("sleeper", &corev1.PodLogOptions{}).DoRaw(ctx)
		return err == nil && strings.Contains(string(logs), "from the host"), nil
	})
	if err != nil {
		pod, _ := n.Clientset.CoreV1().Pods("default").Get(ctx, "sleeper", metav1.GetOptions{})
		t.Fatalf("the sleeper pod did not pull %s or reach %s: %v\n%+v", pushed, host.URL, err, pod.Status)
	}

	dir := n.Dir
	stopped = true
	require.NoError(t, n.Stop())
	require.NoError(t, n.Stop(), "Stop is idempotent")

	assert.Empty(t, n.Leftovers(), "what the node left on the host")
	assert.Empty(t, node.ProcessesMentioning(dir), "processes of the node left running")
	assert.Empty(t, mountsUnder(t, dir), "mounts left under the node's directory")
	_, err = net.InterfaceByName("hce2e0")
	assert.Error(t, err, "the bridge is deleted")
	assert.Equal(t, ipForward, readFile(t, "/proc/sys/net/ipv4/ip_forward"), "net.ipv4.ip_forward is restored")
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "the node's directory is removed: %v", err)
}

// apiCheckJob is a Job running ./test/node/apicheck against the given API server addresses.
func apiCheckJob(ctx context.Context, t *testing.T, n *node.Node, addrs ...string) *batchv1.Job {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "apicheck")
	require.NoError(t, node.BuildStatic(ctx, "./test/node/apicheck", bin))
	img, err := node.BuildImage([]node.File{{HostPath: bin, ImagePath: "/apicheck", Mode: 0o755}}, nil, nil)
	require.NoError(t, err)
	const ref = "localhost/e2e/apicheck:1"
	tarPath := filepath.Join(t.TempDir(), "apicheck.tar")
	require.NoError(t, node.WriteTarball(img, ref, tarPath))
	require.NoError(t, n.ImportImage(ctx, tarPath))
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "apicheck", Namespace: "default"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "apicheck", Image: ref, ImagePullPolicy: corev1.PullNever,
					Command: append([]string{"/apicheck"}, addrs...),
				}},
			}},
		},
	}
}

// waitForJob waits for the Job to complete and returns its pod, failing with the pod's status
// when it does not.
func waitForJob(ctx context.Context, t *testing.T, n *node.Node, job *batchv1.Job) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := n.Clientset.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
		if err != nil {
			return false, err
		}
		if len(pods.Items) == 0 {
			return false, nil
		}
		pod = pods.Items[0]
		switch pod.Status.Phase {
		case corev1.PodSucceeded:
			return true, nil
		case corev1.PodFailed:
			return false, assert.AnError
		}
		return false, nil
	})
	if err != nil {
		events, _ := n.Clientset.CoreV1().Events(job.Namespace).List(ctx, metav1.ListOptions{})
		var lines []string
		for _, e := range events.Items {
			lines = append(lines, e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name+": "+e.Reason+": "+e.Message)
		}
		t.Fatalf("Job %s did not succeed (%v)\npod status: %+v\nevents:\n%s", job.Name, err, pod.Status, strings.Join(lines, "\n"))
	}
	return &pod
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(data))
}

// mountsUnder is node.MountsUnder, failing the test when mountinfo cannot be read.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	mounts, err := node.MountsUnder(dir)
	require.NoError(t, err)
	return mounts
}
