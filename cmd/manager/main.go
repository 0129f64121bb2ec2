// Command manager runs the Connector controller (leader-elected) and the admission webhooks
// (served on every replica). Flags and wiring only; behaviour lives in
// controller/ and webhook/.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/alauda/harbor-connector/cmd/internal/wiring"
	"github.com/alauda/harbor-connector/controller"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/webhook"
)

func main() {
	var (
		metrics                   wiring.MetricsFlags
		probeAddr                 string
		credentialsNamespace      string
		leaderElect               bool
		leaderElectionNamespace   string
		copts                     = controller.DefaultOptions()
		webhookEnabled            bool
		webhookPort               int
		webhookCertDir            string
		forwardProxyURL, pullHost string
		noProxy                   string
		permittedDomains          string
	)
	metrics = wiring.DefaultMetricsFlags(":8443")
	metrics.Bind(flag.CommandLine)
	flag.StringVar(&credentialsNamespace, "credentials-namespace", access.DefaultCredentialsNamespace, "namespace where the manager keeps a copy of each Connector's credentials for the proxy (the proxy's --credentials-namespace); the only namespace it writes Secrets in")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	flag.BoolVar(&leaderElect, "leader-elect", true, "elect one active controller among replicas (a Lease in --leader-election-namespace)")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader-election Lease; required out of cluster")
	flag.StringVar(&copts.ProxyAddress, "proxy-address", copts.ProxyAddress, "base URL of the registry proxy as workloads reach it, e.g. https://connectors-proxy.connectors-system.svc; published in Connector status")
	flag.StringVar(&copts.ProxyReadinessURL, "proxy-readiness-url", copts.ProxyReadinessURL, "the proxy's readiness endpoint (default <proxy-address>/readyz)")
	flag.StringVar(&copts.ProxyCAFile, "proxy-ca-file", copts.ProxyCAFile, "PEM CA bundle that verifies the proxy's serving certificate, re-read at every check (default: system roots)")
	flag.StringVar(&permittedDomains, "intercept-permitted-domains", "", "comma-separated domains the interception CA is constrained to; Connectors outside get ProxyReady=False (HostNotPermitted)")
	flag.DurationVar(&copts.ProbeInterval, "probe-interval", copts.ProbeInterval, "how often a Ready Connector's registry is re-probed")
	flag.DurationVar(&copts.RetryInterval, "retry-interval", copts.RetryInterval, "how soon a failing Connector is re-probed")
	flag.DurationVar(&copts.ProbeTimeout, "probe-timeout", copts.ProbeTimeout, "timeout of each probe request to a registry")
	flag.BoolVar(&webhookEnabled, "webhook", true, "serve the admission webhook for Pods and Jobs (on every replica)")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "port of the admission webhook's HTTPS server")
	flag.StringVar(&webhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with the webhook's tls.crt and tls.key (from cert-manager; reloaded on renewal)")
	flag.StringVar(&forwardProxyURL, "forward-proxy-url", "http://connectors-proxy.connectors-system.svc:3128", "HTTP_PROXY/HTTPS_PROXY value injected into workloads: the proxy's forward listener, no credentials")
	flag.StringVar(&pullHost, "pull-host", policies.DefaultPullHost, "host[:port] rewritten images point at: the node pull listener")
	flag.StringVar(&noProxy, "no-proxy", "", "extra comma-separated NO_PROXY entries for workloads (cluster CIDRs, internal domains); loopback, .svc, .cluster.local and the API server host are always added")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	copts.ProxyAddress = strings.TrimRight(copts.ProxyAddress, "/")
	copts.PermittedDomains = wiring.List(permittedDomains)
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupLog := ctrl.Log.WithName("setup")

	if err := run(managerOptions{
		metrics: metrics, probeAddr: probeAddr, credentialsNamespace: credentialsNamespace,
		leaderElect: leaderElect, leaderElectionNamespace: leaderElectionNamespace,
		controller:     copts,
		webhookEnabled: webhookEnabled, webhookPort: webhookPort, webhookCertDir: webhookCertDir,
		injection: policies.InjectionConfig{ForwardProxyURL: forwardProxyURL, PullHost: pullHost, NoProxy: wiring.List(noProxy)},
	}); err != nil {
		setupLog.Error(err, "manager stopped")
		os.Exit(1)
	}
}

type managerOptions struct {
	metrics                 wiring.MetricsFlags
	probeAddr               string
	credentialsNamespace    string
	leaderElect             bool
	leaderElectionNamespace string
	controller              controller.Options
	webhookEnabled          bool
	webhookPort             int
	webhookCertDir          string
	injection               policies.InjectionConfig
}

func run(o managerOptions) error {
	scheme, err := wiring.Scheme()
	if err != nil {
		return err
	}

	cfg, err := ctrl.GetConfig() // honours --kubeconfig, $KUBECONFIG, in-cluster config
	if err != nil {
		return err
	}
	// The webhook server watches its certificate files and reloads them on renewal.
	webhookServer := crwebhook.NewServer(crwebhook.Options{Port: o.webhookPort, CertDir: o.webhookCertDir})
	if o.webhookEnabled {
		if webhookServer, err = webhook.NewServer("", o.webhookPort, o.webhookCertDir); err != nil {
			return fmt.Errorf("webhook serving certificate in %s: %w", o.webhookCertDir, err)
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 o.metrics.Options(),
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "connectors-manager.connectors.alauda.io",
		LeaderElectionNamespace: o.leaderElectionNamespace,
		WebhookServer:           webhookServer,
	})
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	reconciler := controller.NewReconciler(mgr, o.controller)
	if err := reconciler.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	if err := controller.NewCredentialsMirror(mgr, o.credentialsNamespace).SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	if o.webhookEnabled {
		injection := o.injection
		injection.NoProxy = append(injection.NoProxy, apiServerHost(cfg.Host))
		webhook.Register(mgr, &webhook.Injector{Config: injection})
		if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("informer caches not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// apiServerHost is the API server's host for NO_PROXY: clients in pods talk to it directly.
func apiServerHost(restHost string) string {
	u, err := url.Parse(restHost)
	if err != nil || u.Host == "" {
		return ""
	}
	if host, _, err := net.SplitHostPort(u.Host); err == nil {
		return host
	}
	return u.Host
}
