package csi

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// The kubelet's view: the registration socket names the CSI endpoint, which answers the
// Identity and Node calls.
func TestServerRegistersAndServes(t *testing.T) {
	dir := t.TempDir()
	srv := &Server{Driver: driver(), Endpoint: filepath.Join(dir, "plugins", "connectors-csi", "csi.sock"), RegistrationDir: filepath.Join(dir, "plugins_registry"), Log: logr.Discard()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Start(ctx) }()

	dial := func(path string) *grpc.ClientConn {
		var conn *grpc.ClientConn
		require.Eventually(t, func() bool {
			c, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return false
			}
			conn = c
			return true
		}, 5*time.Second, 50*time.Millisecond)
		return conn
	}
	reg := dial(filepath.Join(dir, "plugins_registry", "connectors-csi-reg.sock"))
	defer reg.Close()
	var info *registerapi.PluginInfo
	require.Eventually(t, func() bool {
		var err error
		info, err = registerapi.NewRegistrationClient(reg).GetInfo(ctx, &registerapi.InfoRequest{})
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, registerapi.CSIPlugin, info.Type)
	assert.Equal(t, "connectors-csi", info.Name)
	assert.Equal(t, srv.Endpoint, info.Endpoint)

	node := dial(info.Endpoint)
	defer node.Close()
	pi, err := csi.NewIdentityClient(node).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	require.NoError(t, err)
	assert.Equal(t, "connectors-csi", pi.Name)
	ni, err := csi.NewNodeClient(node).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	require.NoError(t, err)
	assert.Equal(t, "node-1", ni.NodeId)
}

// On shutdown (SIGTERM) the driver leaves no file of its own on the node: the registration
// socket (so the kubelet deregisters it), the CSI socket and the driver's directory go; the
// kubelet's plugins_registry directory and anything else in it stay.
func TestServerRemovesItsNodeFilesOnShutdown(t *testing.T) {
	dir := t.TempDir()
	registry := filepath.Join(dir, "plugins_registry")
	require.NoError(t, os.MkdirAll(registry, 0o750))
	other := filepath.Join(registry, "other-driver-reg.sock")
	require.NoError(t, os.WriteFile(other, nil, 0o600))
	srv := &Server{Driver: driver(), Endpoint: filepath.Join(dir, "plugins", "connectors-csi", "csi.sock"), RegistrationDir: registry, Log: logr.Discard()}
	regSocket := filepath.Join(registry, "connectors-csi-reg.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	require.Eventually(t, func() bool {
		_, errCSI := os.Stat(srv.Endpoint)
		_, errReg := os.Stat(regSocket)
		return errCSI == nil && errReg == nil
	}, 5*time.Second, 20*time.Millisecond, "both sockets are created")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop")
	}
	for _, gone := range []string{regSocket, srv.Endpoint, filepath.Dir(srv.Endpoint)} {
		_, err := os.Stat(gone)
		assert.True(t, os.IsNotExist(err), "%s is left on the node (%v)", gone, err)
	}
	for _, kept := range []string{registry, other, filepath.Join(dir, "plugins")} {
		_, err := os.Stat(kept)
		assert.NoError(t, err, "%s is the kubelet's, not the driver's", kept)
	}
}
