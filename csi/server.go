package csi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/alauda/harbor-connector/policies"
)

// Server serves the driver on its CSI socket and registers it with the kubelet through the
// plugin registration socket itself (the stock node-driver-registrar is not available here,
// TESTING.md "A real node").
type Server struct {
	Driver *Driver
	// Endpoint is the CSI socket path, e.g. /var/lib/kubelet/plugins/connectors-csi/csi.sock.
	Endpoint string
	// RegistrationDir is the kubelet's plugins_registry directory; empty skips registration.
	RegistrationDir string
	Log             logr.Logger
}

// Start implements manager.Runnable. When ctx ends (SIGTERM: a rollout, or the uninstall) it
// removes what it put on the node: first the registration socket, so the kubelet deregisters
// the driver, then the CSI socket after in-flight calls finish, then the driver's directory
// (the Endpoint's, when empty). The kubelet's plugins_registry directory stays.
func (s *Server) Start(ctx context.Context) error {
	csiLn, err := listenUnix(s.Endpoint)
	if err != nil {
		return err
	}
	csiSrv := grpc.NewServer()
	csi.RegisterIdentityServer(csiSrv, s.Driver)
	csi.RegisterNodeServer(csiSrv, s.Driver)
	go func() { _ = csiSrv.Serve(csiLn) }()
	defer s.removeNodeFiles(csiSrv, s.Endpoint, filepath.Dir(s.Endpoint))

	if s.RegistrationDir != "" {
		regSocket := filepath.Join(s.RegistrationDir, policies.CSIDriverName+"-reg.sock")
		regLn, err := listenUnix(regSocket)
		if err != nil {
			return err
		}
		regSrv := grpc.NewServer()
		registerapi.RegisterRegistrationServer(regSrv, &registration{endpoint: s.Endpoint, log: s.Log})
		go func() { _ = regSrv.Serve(regLn) }()
		defer s.removeNodeFiles(regSrv, regSocket, "")
	}
	s.Log.Info("serving", "endpoint", s.Endpoint, "registration", s.RegistrationDir)
	<-ctx.Done()
	return nil
}

// removeNodeFiles stops srv (gracefully, unless it is the registration server), removes its
// socket and then dir when dir is empty. Go unlinks a listener's socket when it closes; the
// explicit removal also covers a socket whose listener was never closed.
func (s *Server) removeNodeFiles(srv *grpc.Server, socket, dir string) {
	if dir == "" {
		srv.Stop()
	} else {
		srv.GracefulStop()
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.Log.Error(err, "removing the socket on shutdown", "socket", socket)
	}
	if dir == "" {
		return
	}
	// Only when empty; a directory the DaemonSet mounts itself (busy) stays too.
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.Log.Info("the driver's directory stays on the node", "dir", dir, "reason", err.Error())
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every node serves.
func (s *Server) NeedLeaderElection() bool { return false }

func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return net.Listen("unix", path)
}

// registration answers the kubelet's plugin watcher.
type registration struct {
	registerapi.UnimplementedRegistrationServer
	endpoint string
	log      logr.Logger
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: policies.CSIDriverName, Endpoint: r.endpoint, SupportedVersions: []string{"1.0.0"}}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if !st.PluginRegistered {
		r.log.Error(fmt.Errorf("%s", st.Error), "the kubelet refused the plugin registration")
	} else {
		r.log.Info("registered with the kubelet")
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
