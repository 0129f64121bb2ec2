//go:build e2e

package node_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/node"
)

// crashOptions put the crashing node on its own bridge, so this test cannot disturb TestNode's.
var crashOptions = node.Options{Bridge: "hce2e9", BridgeCIDR: "10.89.0.1/24", PodCIDR: "10.89.0.0/24"}

const crashChildEnv = "HCE2E_CRASH_CHILD"

// survivorSeconds makes the crashed run's container process recognisable by its command line.
const survivorSeconds = "3599"

// TestStartAfterCrash: a run killed without Stop (SIGKILL: an OOM kill, a cancelled CI job)
// leaves a running container, its mounts, the bridge, cgroups and envtest's certificate
// directory in the temp directory behind; the next Start on that bridge cleans all of it up from
// the crashed run's record instead of refusing to start.
func TestStartAfterCrash(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		runNodeUntilKilled(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStartAfterCrash$", "-test.v", "-test.timeout=10m")
	child.Env = append(os.Environ(), crashChildEnv+"=1")
	out, err := child.StdoutPipe()
	require.NoError(t, err)
	child.Stderr = child.Stdout
	require.NoError(t, child.Start())
	var crashedDir, crashedCerts string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		t.Logf("crashing run: %s", sc.Text())
		if ready, ok := strings.CutPrefix(sc.Text(), "CRASH-READY "); ok {
			crashedDir, crashedCerts, _ = strings.Cut(ready, " ")
			break
		}
	}
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	require.NotEmpty(t, crashedDir, "the crashing run never got its pod running")
	require.NotEmpty(t, crashedCerts, "the crashing run reports envtest's serving-certificate directory")

	// What the killed run left: its container's mounts and the bridge.
	require.NotEmpty(t, mountsUnder(t, crashedDir), "the killed run left mounts (else this test proves nothing)")
	_, err = net.InterfaceByName(crashOptions.Bridge)
	require.NoError(t, err, "the killed run left its bridge")
	require.NotEmpty(t, node.ProcessesMentioning("sleep\x00"+survivorSeconds), "the killed run left its container running")
	_, err = os.Stat(crashedCerts)
	require.NoError(t, err, "the killed run left envtest's serving-certificate directory in the temp directory")

	opts := crashOptions
	opts.Log = t.Logf
	n, err := node.Start(ctx, opts)
	require.NoError(t, err, "Start after a crashed run on the same bridge")
	assert.Empty(t, node.ProcessesMentioning(crashedDir), "the crashed run's components and shims are gone")
	assert.Empty(t, node.ProcessesMentioning("sleep\x00"+survivorSeconds), "the crashed run's container is gone")
	assert.Empty(t, mountsUnder(t, crashedDir), "the crashed run's mounts are gone")
	_, err = os.Stat(crashedDir)
	assert.True(t, os.IsNotExist(err), "the crashed run's directory is removed: %v", err)
	_, err = os.Stat(crashedCerts)
	assert.True(t, os.IsNotExist(err), "the crashed run's envtest serving-certificate directory %s is removed: %v", crashedCerts, err)

	require.NoError(t, n.Stop())
	assert.Empty(t, n.Leftovers())
	_, err = net.InterfaceByName(crashOptions.Bridge)
	assert.Error(t, err, "the bridge is deleted")
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "hce2e-node-*", "host-state.json"))
	for _, m := range matches {
		assert.NotEqual(t, crashedDir, filepath.Dir(m), "no record of the crashed run is left")
	}
}

// runNodeUntilKilled is the crashing run: it starts a node with a long-running pod, reports the
// node's directory, and waits to be killed.
func runNodeUntilKilled(t *testing.T) {
	ctx := context.Background()
	opts := crashOptions
	opts.Log = t.Logf
	n, err := node.Start(ctx, opts)
	require.NoError(t, err)
	img, err := node.BuildImage(node.BusyboxFiles(), nil, nil)
	require.NoError(t, err)
	tarPath := filepath.Join(n.Dir, "busybox.tar")
	require.NoError(t, node.WriteTarball(img, busybox, tarPath))
	require.NoError(t, n.ImportImage(ctx, tarPath))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "survivor", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "survivor", Image: busybox, ImagePullPolicy: corev1.PullNever,
			Command: []string{"sh", "-c", "exec sleep " + survivorSeconds},
		}}},
	}
	require.NoError(t, n.Client.Create(ctx, pod))
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := n.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)
		return err == nil && len(pod.Status.ContainerStatuses) == 1 && pod.Status.ContainerStatuses[0].State.Running != nil, nil
	})
	require.NoError(t, err, "the container is not running: %+v", pod.Status)
	// The node's directory, and envtest's own beside it in the temp directory (webhook serving
	// certificates: Environment.Start always makes them, and only Environment.Stop removes them).
	fmt.Printf("CRASH-READY %s %s\n", n.Dir, n.Env.WebhookInstallOptions.LocalServingCertDir)
	time.Sleep(time.Hour) // killed by the parent, without Stop
}
