package proxy_test

import (
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
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/proxyserver"
	"github.com/alauda/harbor-connector/test/clients"
)

// netnsHost is a network namespace joined to the host by a veth pair, playing a pod with its
// own address; everything is removed when the test ends.
type netnsHost struct{ name, hostIP, podIP string }

func newNetns(t *testing.T, name, hostIP, podIP string) netnsHost {
	t.Helper()
	hostEnd, podEnd := name+"h", name+"p"
	steps := [][]string{
		{"netns", "add", name},
		{"link", "add", hostEnd, "type", "veth", "peer", "name", podEnd},
		{"link", "set", podEnd, "netns", name},
		{"addr", "add", hostIP + "/30", "dev", hostEnd},
		{"link", "set", hostEnd, "up"},
		{"-n", name, "addr", "add", podIP + "/30", "dev", podEnd},
		{"-n", name, "link", "set", podEnd, "up"},
		{"-n", name, "link", "set", "lo", "up"},
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostEnd).Run()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	for _, s := range steps {
		out, err := exec.Command("ip", s...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s (network namespaces need root and iproute2)", strings.Join(s, " "), out)
	}
	return netnsHost{name: name, hostIP: hostIP, podIP: podIP}
}

// A real client binary in its own network namespace is identified by its address alone: with
// no credential anywhere, crane pulls through the forward proxy when its address belongs to a
// marked pod of the connector's namespace, and is refused otherwise.
func TestForwardIdentityFromNetworkNamespaces(t *testing.T) {
	h := forwardHarbor(t)
	_, env := proxyEnv(t, saToken(t, nsA))
	ref := h.Host() + "/team/netns:v1"
	out, err := runWith(t, env, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 8<<10), "-t", ref)
	require.NoError(t, err, out)

	marked := newNetns(t, "hcfwd1", "10.210.7.1", "10.210.7.2")
	stranger := newNetns(t, "hcfwd2", "10.210.7.5", "10.210.7.6")
	markedPod(t, nsA, "netns-builder", marked.podIP, "fwd", false, true)

	// Forward listeners on the host ends of the veth pairs, serving the same proxy.
	for _, ns := range []netnsHost{marked, stranger} {
		ln, err := net.Listen("tcp", ns.hostIP+":3128")
		require.NoError(t, err)
		srv := &proxyserver.Server{Listener: ln, Handler: forwardProxy, DrainTimeout: time.Second, Log: ctrl.Log}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = srv.Start(ctx) }()
		t.Cleanup(cancel)
	}

	crane := func(ns netnsHost) (string, error) {
		home := t.TempDir()
		_ = os.WriteFile(filepath.Join(home, "config.json"), []byte(`{"auths":{}}`), 0o600)
		cmd := exec.Command("ip", "netns", "exec", ns.name, clients.Path(t, "crane"), "digest", ref)
		cmd.Env = []string{"HOME=" + home, "DOCKER_CONFIG=" + home, "HTTPS_PROXY=http://" + ns.hostIP + ":3128",
			"SSL_CERT_FILE=" + filepath.Join(workDir, "intercept-ca.crt")}
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	out, err = crane(marked)
	require.NoError(t, err, "the marked pod's address identifies it: %s", out)
	assert.True(t, strings.HasPrefix(strings.TrimSpace(out), "sha256:"), out)

	out, err = crane(stranger)
	require.Error(t, err, "an address no marked pod has is refused")
	assert.Contains(t, out, "Proxy Authentication Required", fmt.Sprint(out))
}
