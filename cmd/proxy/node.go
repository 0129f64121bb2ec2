package main

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/proxyserver"
)

// runNode runs --mode=node: the node pull listener, which needs no API access.
func runNode(o options) error {
	log := ctrl.Log.WithName("node-pull")
	handler, err := proxyserver.NewNodeForwarder(o.proxy.Node, log)
	if err != nil {
		return err
	}
	srv := &proxyserver.Server{Addr: o.nodePullAddr, Handler: handler, Log: log}
	log.Info("serving pulls for the container runtime", "address", o.nodePullAddr, "upstream", handler.Upstream.Host)
	return srv.Start(ctrl.SetupSignalHandler())
}
