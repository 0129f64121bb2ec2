// Command csi-driver runs the connectors-csi node plugin on every node: it renders each pod's
// connector files into its inline volume with the token the kubelet hands it. Flags and wiring
// only; behaviour lives in csi/.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/alauda/harbor-connector/cmd/internal/wiring"
	"github.com/alauda/harbor-connector/csi"
	"github.com/alauda/harbor-connector/policies/access"
)

func main() {
	o := defaultDriverOptions()
	lists := o.bind(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	lists.Apply()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(o); err != nil {
		ctrl.Log.Error(err, "csi driver stopped")
		os.Exit(1)
	}
}

// driverOptions are the csi-driver's flags: its process, and the plugin's (csi.Options).
type driverOptions struct {
	metrics   wiring.MetricsFlags
	probeAddr string
	csi       csi.Options
}

// defaultDriverOptions are the csi-driver's defaults (the install's values).
func defaultDriverOptions() driverOptions {
	return driverOptions{metrics: wiring.DefaultMetricsFlags("0"), probeAddr: ":8082", csi: csi.DefaultOptions()}
}

// bind registers the flags on fs, each defaulting to o's value; the returned lists must be
// applied once fs is parsed.
func (o *driverOptions) bind(fs *flag.FlagSet) *wiring.ListFlags {
	var lists wiring.ListFlags
	c := &o.csi
	fs.StringVar(&c.Endpoint, "endpoint", c.Endpoint, "the CSI socket the kubelet calls")
	fs.StringVar(&c.RegistrationDir, "kubelet-registration-dir", c.RegistrationDir, "the kubelet's plugin registration directory (empty: do not register)")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "this node's name (default $NODE_NAME)")
	fs.StringVar(&c.Audience, "audience", c.Audience, "audience of the kubelet-issued token rendered into the files")
	fs.StringVar(&c.ForwardProxy, "forward-proxy", c.ForwardProxy, "the proxy's plain forward listener (http.proxy)")
	fs.StringVar(&c.ForwardProxyTLS, "forward-proxy-tls", c.ForwardProxyTLS, "the proxy's TLS forward listener (https.proxy, .env)")
	fs.StringVar(&c.ReverseHost, "reverse-host", c.ReverseHost, "the reverse proxy's host[:port] (config.json, buildkitd.toml)")
	lists.Var(fs, &c.CABundleFiles, "ca-bundle-files", "comma-separated PEM files rendered into ca.crt (proxy serving CA, interception CA; re-read on every publish)")
	fs.BoolVar(&c.Tmpfs, "tmpfs", c.Tmpfs, "mount each volume as its own tmpfs, so the pod's token never touches the node's disk (needs CAP_SYS_ADMIN)")
	o.metrics.Bind(fs)
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", o.probeAddr, "/healthz and /readyz")
	return &lists
}

func run(o driverOptions) error {
	if o.csi.NodeID == "" {
		return fmt.Errorf("--node-id (or $NODE_NAME) is required")
	}
	scheme, err := wiring.Scheme()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: o.metrics.Options(), HealthProbeBindAddress: o.probeAddr})
	if err != nil {
		return err
	}
	// Connectors and namespaces from the informer cache, one live read on a miss: the same
	// lookup the webhook uses.
	driver := csi.NewDriver(o.csi, &access.CachedSource{Cache: mgr.GetClient(), Live: mgr.GetAPIReader()})
	if err := mgr.Add(&csi.Server{Driver: driver, Endpoint: o.csi.Endpoint, RegistrationDir: o.csi.RegistrationDir, Log: ctrl.Log.WithName("csi")}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}
