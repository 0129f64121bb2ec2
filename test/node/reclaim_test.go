package node

import (
	"os"
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
	}
	require.NoError(t, n.writeHostState())

	s, err := loadHostState(n.Dir)
	require.NoError(t, err)
	got := crashedNode(n.Dir, s, t.Logf)
	assert.Equal(t, n.opts, got.opts)
	assert.Equal(t, n.sysctls, got.sysctls)
	assert.Equal(t, n.hostDirs, got.hostDirs)
	assert.Equal(t, "/hcex0", got.cgroupRoot)
	assert.True(t, got.bridge && got.cgroup, "Stop removes the bridge and cgroups the crashed run may have made")
	// Restoring from the record removes exactly what the live node's snapshot would.
	after := parseIPTablesSave([]byte(iptablesAfter))
	mentions := []string{"hcex0", "10.99.0.0/24"}
	assert.Equal(t,
		cleanupScript(n.iptables["iptables"], after, mentions),
		cleanupScript(got.iptables["iptables"], after, mentions))
}
