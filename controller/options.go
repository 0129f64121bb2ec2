package controller

import (
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configure the Connector controller. DefaultOptions holds every default; the manager's
// flags start from it.
type Options struct {
	// ProbeInterval is how often a Ready Connector's registry is re-probed; RetryInterval how
	// soon a failing one is.
	ProbeInterval, RetryInterval time.Duration
	// ProbeTimeout bounds each probe request to a registry.
	ProbeTimeout time.Duration
	// ProxyAddress is the proxy's base URL as workloads reach it (published in status);
	// ProxyReadinessURL its readiness endpoint (default <ProxyAddress>/readyz); ProxyCAFile the
	// bundle that verifies it (default system roots).
	ProxyAddress, ProxyReadinessURL, ProxyCAFile string
	// ProxyCheckCacheFor is how long one proxy readiness answer is reused.
	ProxyCheckCacheFor time.Duration
	// PermittedDomains are the interception CA's name constraints; Connectors outside get
	// ProxyReady=False.
	PermittedDomains []string
}

// DefaultOptions are the controller's defaults (the install's values).
func DefaultOptions() Options {
	return Options{
		ProbeInterval:      5 * time.Minute,
		RetryInterval:      30 * time.Second,
		ProbeTimeout:       10 * time.Second,
		ProxyCheckCacheFor: 10 * time.Second,
	}
}

// NewReconciler builds the reconciler for a manager from o (DefaultOptions, as the flags or a
// test changed it): Connectors from its cache, Secrets read live. A probe timeout that is not
// positive is refused rather than replaced: with it every probe would fail at once.
func NewReconciler(mgr ctrl.Manager, o Options) (*ConnectorReconciler, error) {
	if o.ProbeTimeout <= 0 {
		return nil, fmt.Errorf("--probe-timeout=%s: must be positive, or every probe fails at once", o.ProbeTimeout)
	}
	return &ConnectorReconciler{
		Client:       mgr.GetClient(),
		SecretReader: mgr.GetAPIReader(),
		Recorder:     mgr.GetEventRecorder("connector-controller"),
		Prober:       &Prober{Timeout: o.ProbeTimeout},
		Proxy: &ProxyChecker{Address: o.ProxyAddress, ReadinessURL: o.ProxyReadinessURL, RootCAFile: o.ProxyCAFile,
			CacheFor: o.ProxyCheckCacheFor, PermittedDomains: o.PermittedDomains},
		ProbeInterval: o.ProbeInterval,
		RetryInterval: o.RetryInterval,
	}, nil
}
