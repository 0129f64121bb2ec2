package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBridgeLockIsExclusive(t *testing.T) {
	bridge := "hcelocktest"
	first, err := lockBridge(bridge)
	require.NoError(t, err)
	_, err = lockBridge(bridge)
	require.Error(t, err, "a second node on the same bridge")
	assert.Contains(t, err.Error(), "another test node on bridge "+bridge+" is running")
	assert.Contains(t, err.Error(), "choose another Options.Bridge")

	unlockBridge(first)
	again, err := lockBridge(bridge)
	require.NoError(t, err, "the lock is free once the first node is done")
	unlockBridge(again)
	_ = os.Remove(again.Name())
}

// The record a node writes before it touches the host gives a later run everything Stop needs.
func TestHostStateRoundTrip(t *testing.T) {
	n := &Node{
		Dir:      t.TempDir(),
		opts:     Options{Bridge: "hcex0", BridgeCIDR: "10.99.0.1/24", PodCIDR: "10.99.0.0/24"},
		sysctls:  map[string]string{"net/ipv4/ip_forward": "0"},
		iptables: map[string]ruleset{"iptables": parseIPTablesSave([]byte(iptablesBefore))},
		hostDirs: map[string]bool{"/var/log/pods": true},
		tempDirs: []string{filepath.Join(os.TempDir(), "envtest-serving-certs-123")},
	}
	require.NoError(t, n.writeHostState())

	s, err := loadHostState(n.Dir)
	require.NoError(t, err)
	got := crashedNode(n.Dir, s, t.Logf)
	assert.Equal(t, n.opts, got.opts)
	assert.Equal(t, n.sysctls, got.sysctls)
	assert.Equal(t, n.hostDirs, got.hostDirs)
	assert.Equal(t, n.tempDirs, got.tempDirs, "envtest's directories in the temp directory are recorded")
	assert.Equal(t, "/hcex0", got.cgroupRoot)
	assert.True(t, got.bridge && got.cgroup, "Stop removes the bridge and cgroups the crashed run may have made")
	// Restoring from the record removes exactly what the live node's snapshot would.
	after := parseIPTablesSave([]byte(iptablesAfter))
	mentions := []string{"hcex0", "10.99.0.0/24"}
	assert.Equal(t,
		cleanupScript(n.iptables["iptables"], after, mentions),
		cleanupScript(got.iptables["iptables"], after, mentions))
}

// A crashed run's envtest directories are removed from its record, and only those: a record
// naming anything but an envtest directory beside the node's own is refused, not followed.
func TestRemoveTempDirs(t *testing.T) {
	tmp := t.TempDir()
	nodeDir := filepath.Join(tmp, "hce2e-node-1")
	require.NoError(t, os.Mkdir(nodeDir, 0o700))
	serving := filepath.Join(tmp, "envtest-serving-certs-42")
	require.NoError(t, os.Mkdir(serving, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(serving, "tls.key"), []byte("key"), 0o600))
	framework := filepath.Join(tmp, "k8s_test_framework_7")
	require.NoError(t, os.Mkdir(framework, 0o700))
	foreign := filepath.Join(tmp, "someone-elses")
	require.NoError(t, os.Mkdir(foreign, 0o700))
	elsewhere := filepath.Join(t.TempDir(), "envtest-serving-certs-9")
	require.NoError(t, os.Mkdir(elsewhere, 0o700))
	link := filepath.Join(tmp, "envtest-serving-certs-link")
	require.NoError(t, os.Symlink(foreign, link))

	n := &Node{Dir: nodeDir, tempDirs: []string{serving, framework, filepath.Join(tmp, "envtest-serving-certs-gone")}}
	assert.Contains(t, n.Leftovers(), serving+" (envtest's) still exists")
	require.NoError(t, n.removeTempDirs())
	for _, d := range []string{serving, framework} {
		_, err := os.Lstat(d)
		assert.True(t, os.IsNotExist(err), "%s is removed", d)
	}
	for _, left := range n.Leftovers() {
		assert.NotContains(t, left, "envtest")
	}

	for _, bad := range []string{foreign, elsewhere, link, filepath.Join(tmp, "envtest-serving-certs-"), tmp + "/x/../envtest-serving-certs-1", "/"} {
		n := &Node{Dir: nodeDir, tempDirs: []string{bad}}
		assert.Error(t, n.removeTempDirs(), "%s", bad)
	}
	for _, d := range []string{foreign, elsewhere, link} {
		_, err := os.Lstat(d)
		assert.NoError(t, err, "%s is left alone", d)
	}
}
