package csi

import (
	"context"
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
