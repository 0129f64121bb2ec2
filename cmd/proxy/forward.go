package main

import (
	"fmt"
	"net"
	"path/filepath"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/cmd/internal/wiring"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver"
	"github.com/alauda/harbor-connector/proxyserver/intercept"
)

type forwardFlags struct {
	plainAddr, tlsAddr, caDir, permitted  string
	tunnelMode, tunnelAllow, clusterCIDRs string
	podIdentity                           bool
}

func (f forwardFlags) build(handler *proxyserver.Handler, mgr ctrl.Manager) (*proxyserver.Forward, error) {
	mode := policies.TunnelMode(f.tunnelMode)
	if mode != policies.TunnelPublic && mode != policies.TunnelDeny && mode != policies.TunnelAllowList {
		return nil, fmt.Errorf("--tunnel-policy=%q: want public, deny or allowlist", f.tunnelMode)
	}
	var cidrs []*net.IPNet
	for _, c := range wiring.List(f.clusterCIDRs) {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("--cluster-cidrs: %q: %w", c, err)
		}
		cidrs = append(cidrs, n)
	}
	fwd := &proxyserver.Forward{
		Handler:   handler,
		Authority: &intercept.Authority{CertFile: filepath.Join(f.caDir, "tls.crt"), KeyFile: filepath.Join(f.caDir, "tls.key"), PermittedDomains: wiring.List(f.permitted)},
		Tunnels:   policies.TunnelPolicy{Mode: mode, Allow: wiring.List(f.tunnelAllow), ClusterCIDRs: cidrs},
	}
	if f.podIdentity {
		fwd.Pods = &proxyserver.PodsByIP{Reader: mgr.GetClient(), Live: proxyserver.NewLiveReads(mgr.GetAPIReader(), proxyserver.DefaultLiveReadsQPS, proxyserver.DefaultLiveReadsBurst)}
	}
	return fwd, nil
}
