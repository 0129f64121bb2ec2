// Command proxy runs the registry proxy: workloads reach their connectors' registries through it
// with a ServiceAccount token, and it adds the connectors' credentials. Flags and wiring only;
// behaviour lives in proxyserver/.
package main

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/alauda/harbor-connector/cmd/internal/wiring"
	"github.com/alauda/harbor-connector/proxyserver"
)

func main() {
	o := defaultOptions()
	lists := o.bind(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	lists.Apply()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if o.mode == "node" {
		if err := runNode(o); err != nil {
			ctrl.Log.Error(err, "node pull listener stopped")
			os.Exit(1)
		}
		return
	}
	if o.mode != "central" {
		ctrl.Log.Error(nil, "--mode must be central or node", "mode", o.mode)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		ctrl.Log.Error(err, "proxy stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	scheme, err := wiring.Scheme()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig() // honours --kubeconfig, $KUBECONFIG, in-cluster config
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                o.metrics.Options(),
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       o.pprofAddr,
		Cache:                  proxyserver.CacheOptionsFor(o.proxy.CredentialsNamespace),
	})
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	o.proxy.AuditLog = wiring.AuditLogger(os.Stderr).WithName("proxy")
	handler, err := proxyserver.NewHandler(ctx, mgr, o.proxy)
	if err != nil {
		return err
	}
	ready := func() bool {
		c, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		return handler.MarkedPods().HasSynced() && mgr.GetCache().WaitForCacheSync(c)
	}
	routes := proxyserver.Routes(handler, ready)
	log := ctrl.Log.WithName("proxy")
	if o.httpsAddr != "" {
		if err := mgr.Add(&proxyserver.Server{Addr: o.httpsAddr, Handler: routes, CertFile: filepath.Join(o.certDir, "tls.crt"), KeyFile: filepath.Join(o.certDir, "tls.key"), DrainTimeout: o.drainTimeout, Log: log}); err != nil {
			return err
		}
	}
	if o.httpAddr != "" {
		if err := mgr.Add(&proxyserver.Server{Addr: o.httpAddr, Handler: routes, DrainTimeout: o.drainTimeout, Log: log}); err != nil {
			return err
		}
	}
	if o.forwardAddr != "" || o.forwardTLSAddr != "" {
		forward, err := proxyserver.NewForward(handler, mgr, o.proxy.Forward)
		if err != nil {
			return err
		}
		if o.forwardAddr != "" {
			if err := mgr.Add(&proxyserver.Server{Addr: o.forwardAddr, Handler: forward, DrainTimeout: o.drainTimeout, Log: log}); err != nil {
				return err
			}
		}
		if o.forwardTLSAddr != "" {
			if err := mgr.Add(&proxyserver.Server{Addr: o.forwardTLSAddr, Handler: forward, CertFile: filepath.Join(o.certDir, "tls.crt"), KeyFile: filepath.Join(o.certDir, "tls.key"), DrainTimeout: o.drainTimeout, Log: log}); err != nil {
				return err
			}
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("informers", healthz.Checker(func(_ *http.Request) error {
		if !ready() {
			return errNotSynced
		}
		return nil
	})); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

var errNotSynced = errors.New("informer caches not synced")
