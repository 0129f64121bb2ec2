// Command csi-driver runs the connectors-csi node plugin on every node: it renders each pod's
// connector files into its inline volume with the token the kubelet hands it. Flags and wiring
// only; behaviour lives in csi/.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/alauda/harbor-connector/cmd/internal/wiring"
	"github.com/alauda/harbor-connector/csi"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
)

func main() {
	var (
		endpoint, registrationDir, nodeID, audience string
		forward, forwardTLS, reverseHost, caFiles   string
		metrics                                     wiring.MetricsFlags
		probeAddr                                   string
		tmpfs                                       bool
	)
	flag.StringVar(&endpoint, "endpoint", "/var/lib/kubelet/plugins/connectors-csi/csi.sock", "the CSI socket the kubelet calls")
	flag.StringVar(&registrationDir, "kubelet-registration-dir", "/var/lib/kubelet/plugins_registry", "the kubelet's plugin registration directory (empty: do not register)")
	flag.StringVar(&nodeID, "node-id", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	flag.StringVar(&audience, "audience", policies.DefaultAudience, "audience of the kubelet-issued token rendered into the files")
	flag.StringVar(&forward, "forward-proxy", "http://connectors-proxy.connectors-system.svc:3128", "the proxy's plain forward listener (http.proxy)")
	flag.StringVar(&forwardTLS, "forward-proxy-tls", "https://connectors-proxy.connectors-system.svc:3129", "the proxy's TLS forward listener (https.proxy, .env)")
	flag.StringVar(&reverseHost, "reverse-host", "connectors-proxy.connectors-system.svc", "the reverse proxy's host[:port] (config.json, buildkitd.toml)")
	flag.StringVar(&caFiles, "ca-bundle-files", "/etc/connectors/proxy-ca/ca.crt,/etc/connectors/intercept-ca/ca.crt", "comma-separated PEM files rendered into ca.crt (proxy serving CA, interception CA; re-read on every publish)")
	flag.BoolVar(&tmpfs, "tmpfs", true, "mount each volume as its own tmpfs, so the pod's token never touches the node's disk (needs CAP_SYS_ADMIN)")
	metrics = wiring.DefaultMetricsFlags("0")
	metrics.Bind(flag.CommandLine)
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8082", "/healthz and /readyz")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(endpoint, registrationDir, metrics, probeAddr, &csi.Driver{
		NodeID: nodeID, Audience: audience, ForwardProxy: forward, ForwardProxyTLS: forwardTLS, ReverseHost: reverseHost,
		CABundle: bundleReader(wiring.List(caFiles)), Tmpfs: tmpfs,
	}); err != nil {
		ctrl.Log.Error(err, "csi driver stopped")
		os.Exit(1)
	}
}

func run(endpoint, registrationDir string, metrics wiring.MetricsFlags, probeAddr string, driver *csi.Driver) error {
	if driver.NodeID == "" {
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
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metrics.Options(), HealthProbeBindAddress: probeAddr})
	if err != nil {
		return err
	}
	// Connectors and namespaces from the informer cache, one live read on a miss: the same
	// lookup the webhook uses.
	driver.Lookup = &access.CachedSource{Cache: mgr.GetClient(), Live: mgr.GetAPIReader()}
	if err := mgr.Add(&csi.Server{Driver: driver, Endpoint: endpoint, RegistrationDir: registrationDir, Log: ctrl.Log.WithName("csi")}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

// bundleReader concatenates the CA files on every call, so a rotated CA reaches the next publish.
func bundleReader(files []string) func() ([]byte, error) {
	return func() ([]byte, error) {
		var out bytes.Buffer
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out.Write(bytes.TrimSpace(b))
			out.WriteString("\n")
		}
		return out.Bytes(), nil
	}
}
