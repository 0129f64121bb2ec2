package main

import (
	"fmt"
	"net/url"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/proxyserver"
)

// nodeFlags configure --mode=node: the node pull listener, which needs no API access.
type nodeFlags struct {
	addr, upstream, tokenFile, caFile string
}

func runNode(f nodeFlags) error {
	u, err := url.Parse(f.upstream)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--upstream-proxy=%q: want the central proxy's https:// URL, e.g. https://connectors-proxy.connectors-system.svc", f.upstream)
	}
	log := ctrl.Log.WithName("node-pull")
	handler := &proxyserver.NodeForwarder{Upstream: u, TokenFile: f.tokenFile, CAFile: f.caFile, Log: log}
	srv := &proxyserver.Server{Addr: f.addr, Handler: handler, Log: log}
	log.Info("serving pulls for the container runtime", "address", f.addr, "upstream", u.Host)
	return srv.Start(ctrl.SetupSignalHandler())
}
