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
	o := defaultManagerOptions()
	lists := o.bind(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	lists.Apply()
	o.controller.ProxyAddress = strings.TrimRight(o.controller.ProxyAddress, "/")
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "manager stopped")
		os.Exit(1)
	}
}

// managerOptions are the manager's flags: its process, the controller's (controller.Options)
// and the webhook's (webhook.Options).
type managerOptions struct {
	metrics                 wiring.MetricsFlags
	probeAddr               string
	credentialsNamespace    string
	leaderElect             bool
	leaderElectionNamespace string
	controller              controller.Options
	webhookEnabled          bool
	webhook                 webhook.Options
}

// defaultManagerOptions are the manager's defaults (the install's values).
func defaultManagerOptions() managerOptions {
	return managerOptions{
		metrics:              wiring.DefaultMetricsFlags(":8443"),
		probeAddr:            ":8081",
		credentialsNamespace: access.DefaultCredentialsNamespace,
		leaderElect:          true,
		controller:           controller.DefaultOptions(),
		webhookEnabled:       true,
		webhook:              webhook.DefaultOptions(),
	}
}

// bind registers the flags on fs, each defaulting to o's value; the returned lists must be
// applied once fs is parsed.
func (o *managerOptions) bind(fs *flag.FlagSet) *wiring.ListFlags {
	var lists wiring.ListFlags
	c, inj := &o.controller, &o.webhook.Injection
	o.metrics.Bind(fs)
	fs.StringVar(&o.credentialsNamespace, "credentials-namespace", o.credentialsNamespace, "namespace where the manager keeps a copy of each Connector's credentials for the proxy (the proxy's --credentials-namespace); the only namespace it writes Secrets in")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", o.probeAddr, "address of the /healthz and /readyz endpoints")
	fs.BoolVar(&o.leaderElect, "leader-elect", o.leaderElect, "elect one active controller among replicas (a Lease in --leader-election-namespace)")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", o.leaderElectionNamespace, "namespace of the leader-election Lease; required out of cluster")
	fs.StringVar(&c.ProxyAddress, "proxy-address", c.ProxyAddress, "base URL of the registry proxy as workloads reach it, e.g. https://"+policies.DefaultProxyHost+"; published in Connector status")
	fs.StringVar(&c.ProxyReadinessURL, "proxy-readiness-url", c.ProxyReadinessURL, "the proxy's readiness endpoint (default <proxy-address>/readyz)")
	fs.StringVar(&c.ProxyCAFile, "proxy-ca-file", c.ProxyCAFile, "PEM CA bundle that verifies the proxy's serving certificate, re-read at every check (default: system roots)")
	lists.Var(fs, &c.PermittedDomains, "intercept-permitted-domains", "comma-separated domains the interception CA is constrained to; Connectors outside get ProxyReady=False (HostNotPermitted)")
	fs.DurationVar(&c.ProbeInterval, "probe-interval", c.ProbeInterval, "how often a Ready Connector's registry is re-probed")
	fs.DurationVar(&c.RetryInterval, "retry-interval", c.RetryInterval, "how soon a failing Connector is re-probed")
	fs.DurationVar(&c.ProbeTimeout, "probe-timeout", c.ProbeTimeout, "timeout of each probe request to a registry")
	fs.BoolVar(&o.webhookEnabled, "webhook", o.webhookEnabled, "serve the admission webhook for Pods and Jobs (on every replica)")
	fs.IntVar(&o.webhook.Port, "webhook-port", o.webhook.Port, "port of the admission webhook's HTTPS server")
	fs.StringVar(&o.webhook.CertDir, "webhook-cert-dir", o.webhook.CertDir, "directory with the webhook's tls.crt and tls.key (from cert-manager; reloaded on renewal)")
	fs.StringVar(&inj.ForwardProxyURL, "forward-proxy-url", inj.ForwardProxyURL, "HTTP_PROXY/HTTPS_PROXY value injected into workloads: the proxy's forward listener, no credentials")
	fs.StringVar(&inj.PullHost, "pull-host", inj.PullHost, "host[:port] rewritten images point at: the node pull listener")
	lists.Var(fs, &inj.NoProxy, "no-proxy", "extra comma-separated NO_PROXY entries for workloads (cluster CIDRs, internal domains); loopback, .svc, .cluster.local and the API server host are always added")
	return &lists
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
	webhookServer := crwebhook.NewServer(crwebhook.Options{Port: o.webhook.Port, CertDir: o.webhook.CertDir})
	if o.webhookEnabled {
		if webhookServer, err = webhook.NewServer("", o.webhook.Port, o.webhook.CertDir); err != nil {
			return fmt.Errorf("webhook serving certificate in %s: %w", o.webhook.CertDir, err)
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
	reconciler, err := controller.NewReconciler(mgr, o.controller)
	if err != nil {
		return err
	}
	if err := reconciler.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	if err := controller.NewCredentialsMirror(mgr, o.credentialsNamespace).SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	if o.webhookEnabled {
		injection := o.webhook.Injection
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
