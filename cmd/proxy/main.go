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
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/alauda/harbor-connector/cmd/internal/wiring"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver"
)

func main() {
	var (
		httpsAddr, httpAddr, certDir string
		metrics                      wiring.MetricsFlags
		probeAddr                    string
		audiences                    string
		opts                         = proxyserver.DefaultOptions()
		drainTimeout                 time.Duration
		fwd                          forwardFlags
		mode, nodeForwarders         string
		node                         nodeFlags
	)
	flag.StringVar(&mode, "mode", "central", "central: the proxy holding connectors' credentials; node: the node pull listener (DaemonSet), which holds none and relays to the central proxy")
	flag.StringVar(&node.addr, "node-pull-address", policies.DefaultPullHost, "--mode=node: address the container runtime pulls rewritten images from (plain HTTP, loopback)")
	flag.StringVar(&node.upstream, "upstream-proxy", "https://connectors-proxy.connectors-system.svc", "--mode=node: the central proxy's reverse listener (its Service)")
	flag.StringVar(&node.tokenFile, "token-file", "/var/run/secrets/connectors/token", "--mode=node: the listener's projected ServiceAccount token (audience connectors-proxy), re-read as the kubelet rotates it")
	flag.StringVar(&node.caFile, "upstream-ca-file", "/etc/connectors/proxy-ca/ca.crt", "--mode=node: CA bundle that verifies the central proxy (re-read on change)")
	flag.StringVar(&nodeForwarders, "node-forwarders", strings.Join(opts.NodeForwarders, ","), "comma-separated ServiceAccounts (<namespace>/<name>) of the node pull listeners; empty disables node pulls")
	flag.StringVar(&httpsAddr, "https-address", ":8443", "address of the reverse proxy's HTTPS listener (empty disables it)")
	flag.StringVar(&certDir, "tls-cert-dir", "/etc/connectors/proxy-tls", "directory with tls.crt and tls.key for HTTPS (from cert-manager; reloaded on renewal)")
	flag.StringVar(&httpAddr, "http-address", "", "address of a plain-HTTP reverse listener, for development (empty disables it)")
	metrics.Bind(flag.CommandLine, ":8444")
	flag.StringVar(&opts.CredentialsNamespace, "credentials-namespace", opts.CredentialsNamespace, "namespace where the manager keeps its copies of connectors' credentials; the only namespace whose Secrets the proxy reads (the manager's --credentials-namespace)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints for the kubelet")
	flag.StringVar(&audiences, "audience", strings.Join(opts.Audiences, ","), "comma-separated token audiences the proxy accepts")
	flag.DurationVar(&opts.TokenReviewTTL, "tokenreview-ttl", opts.TokenReviewTTL, "how long an accepted token is trusted without a new TokenReview (bounded by its expiry)")
	flag.DurationVar(&opts.TokenReviewNegativeTTL, "tokenreview-negative-ttl", opts.TokenReviewNegativeTTL, "how long a refused token is remembered")
	flag.IntVar(&opts.MaxStreamsPerIdentity, "max-streams-per-identity", opts.MaxStreamsPerIdentity, "concurrent transfers one ServiceAccount may have (0: unlimited)")
	flag.IntVar(&opts.MaxStreamsPerConnector, "max-streams-per-connector", opts.MaxStreamsPerConnector, "concurrent transfers through one connector (0: unlimited)")
	flag.IntVar(&opts.MaxTokenFetches, "max-token-fetches", opts.MaxTokenFetches, "concurrent token fetches per connector")
	flag.DurationVar(&opts.StallTimeout, "stall-timeout", opts.StallTimeout, "abort a transfer that moves no bytes for this long")
	flag.DurationVar(&drainTimeout, "drain-timeout", 5*time.Minute, "on shutdown, how long in-flight transfers may finish")
	flag.StringVar(&fwd.plainAddr, "forward-address", "", "address of the forward proxy's plain-HTTP listener (HTTPS_PROXY=http://...; the install uses :3128; empty disables it)")
	flag.StringVar(&fwd.tlsAddr, "forward-tls-address", "", "address of the forward proxy's TLS listener, for clients that send a token (the install uses :3129; empty disables it)")
	flag.StringVar(&fwd.caDir, "intercept-ca-dir", "/etc/connectors/intercept-ca", "directory with the interception CA's tls.crt and tls.key (an isCA certificate; re-read on rotation)")
	flag.StringVar(&fwd.permitted, "intercept-permitted-domains", "", "comma-separated domains leaves may be minted for (should match the CA's name constraints); empty: any connector host")
	flag.StringVar(&fwd.tunnelMode, "tunnel-policy", "public", "CONNECTs to hosts other than connectors' registries: public (only public addresses), deny, or allowlist")
	flag.StringVar(&fwd.tunnelAllow, "tunnel-allow", "", "comma-separated host names (.suffix) and CIDRs tunnels may reach even when not public")
	flag.StringVar(&fwd.clusterCIDRs, "cluster-cidrs", "", "comma-separated pod and service CIDRs, never reached by tunnels")
	flag.BoolVar(&fwd.podIdentity, "pod-identity", true, "identify forward-proxy callers without a credential by the source address of a running pod the webhook marked")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	opts.Audiences = wiring.List(audiences)
	opts.NodeForwarders = wiring.List(nodeForwarders)
	if mode == "node" {
		if err := runNode(node); err != nil {
			ctrl.Log.Error(err, "node pull listener stopped")
			os.Exit(1)
		}
		return
	}
	if mode != "central" {
		ctrl.Log.Error(nil, "--mode must be central or node", "mode", mode)
		os.Exit(2)
	}
	if err := run(httpsAddr, httpAddr, certDir, metrics, probeAddr, drainTimeout, opts, fwd); err != nil {
		ctrl.Log.Error(err, "proxy stopped")
		os.Exit(1)
	}
}

func run(httpsAddr, httpAddr, certDir string, metrics wiring.MetricsFlags, probeAddr string, drain time.Duration, opts proxyserver.Options, fwd forwardFlags) error {
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
		Metrics:                metrics.Options(),
		HealthProbeBindAddress: probeAddr,
		Cache:                  proxyserver.CacheOptionsFor(opts.CredentialsNamespace),
	})
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	handler, err := proxyserver.NewHandler(ctx, mgr, opts)
	if err != nil {
		return err
	}
	ready := func() bool {
		c, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		return mgr.GetCache().WaitForCacheSync(c)
	}
	routes := proxyserver.Routes(handler, ready)
	log := ctrl.Log.WithName("proxy")
	if httpsAddr != "" {
		if err := mgr.Add(&proxyserver.Server{Addr: httpsAddr, Handler: routes, CertFile: filepath.Join(certDir, "tls.crt"), KeyFile: filepath.Join(certDir, "tls.key"), DrainTimeout: drain, Log: log}); err != nil {
			return err
		}
	}
	if httpAddr != "" {
		if err := mgr.Add(&proxyserver.Server{Addr: httpAddr, Handler: routes, DrainTimeout: drain, Log: log}); err != nil {
			return err
		}
	}
	if fwd.plainAddr != "" || fwd.tlsAddr != "" {
		forward, err := fwd.build(handler, mgr)
		if err != nil {
			return err
		}
		if fwd.plainAddr != "" {
			if err := mgr.Add(&proxyserver.Server{Addr: fwd.plainAddr, Handler: forward, DrainTimeout: drain, Log: log}); err != nil {
				return err
			}
		}
		if fwd.tlsAddr != "" {
			if err := mgr.Add(&proxyserver.Server{Addr: fwd.tlsAddr, Handler: forward, CertFile: filepath.Join(certDir, "tls.crt"), KeyFile: filepath.Join(certDir, "tls.key"), DrainTimeout: drain, Log: log}); err != nil {
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
