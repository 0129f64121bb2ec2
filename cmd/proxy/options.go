package main

import (
	"flag"
	"time"

	"github.com/alauda/harbor-connector/cmd/internal/wiring"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver"
)

// options are the proxy's flags: the listeners and shutdown this binary runs, and proxy, which
// proxyserver owns.
type options struct {
	mode      string
	metrics   wiring.MetricsFlags
	probeAddr string
	// pprofAddr serves net/http/pprof (heap and CPU profiles); "0" (the default) disables it.
	pprofAddr string
	// httpsAddr and httpAddr are the reverse listeners, certDir the serving certificate of the
	// HTTPS ones (reverse and forward); an empty address disables its listener.
	httpsAddr, httpAddr, certDir string
	forwardAddr, forwardTLSAddr  string
	// nodePullAddr is where the node pull listener (--mode=node) serves the container runtime.
	nodePullAddr string
	drainTimeout time.Duration
	proxy        proxyserver.Options
}

// defaultOptions are the proxy's defaults (the install's values, but for the forward listeners,
// which the install enables with --forward-address and --forward-tls-address).
func defaultOptions() options {
	return options{
		mode:         "central",
		metrics:      wiring.DefaultMetricsFlags(":8444"),
		probeAddr:    ":8081",
		pprofAddr:    "0",
		httpsAddr:    ":8443",
		certDir:      "/etc/connectors/proxy-tls",
		nodePullAddr: policies.DefaultPullHost,
		drainTimeout: 5 * time.Minute,
		proxy:        proxyserver.DefaultOptions(),
	}
}

// bind registers the flags on fs, each defaulting to o's value; the returned lists must be
// applied once fs is parsed.
func (o *options) bind(fs *flag.FlagSet) *wiring.ListFlags {
	var lists wiring.ListFlags
	p, fwd, node := &o.proxy, &o.proxy.Forward, &o.proxy.Node
	fs.StringVar(&o.mode, "mode", o.mode, "central: the proxy holding connectors' credentials; node: the node pull listener (DaemonSet), which holds none and relays to the central proxy")
	fs.StringVar(&o.nodePullAddr, "node-pull-address", o.nodePullAddr, "--mode=node: address the container runtime pulls rewritten images from (plain HTTP, loopback)")
	fs.StringVar(&node.Upstream, "upstream-proxy", node.Upstream, "--mode=node: the central proxy's reverse listener (its Service)")
	fs.StringVar(&node.TokenFile, "token-file", node.TokenFile, "--mode=node: the listener's projected ServiceAccount token (audience connectors-proxy), re-read as the kubelet rotates it")
	fs.StringVar(&node.CAFile, "upstream-ca-file", node.CAFile, "--mode=node: CA bundle that verifies the central proxy (re-read on change)")
	lists.Var(fs, &p.NodeForwarders, "node-forwarders", "comma-separated ServiceAccounts (<namespace>/<name>) of the node pull listeners; empty disables node pulls")
	fs.StringVar(&o.httpsAddr, "https-address", o.httpsAddr, "address of the reverse proxy's HTTPS listener (empty disables it)")
	fs.StringVar(&o.certDir, "tls-cert-dir", o.certDir, "directory with tls.crt and tls.key for HTTPS (from cert-manager; reloaded on renewal)")
	fs.StringVar(&o.httpAddr, "http-address", o.httpAddr, "address of a plain-HTTP reverse listener, for development (empty disables it)")
	o.metrics.Bind(fs)
	fs.StringVar(&p.CredentialsNamespace, "credentials-namespace", p.CredentialsNamespace, "namespace where the manager keeps its copies of connectors' credentials; the only namespace whose Secrets the proxy reads (the manager's --credentials-namespace)")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", o.probeAddr, "address of the /healthz and /readyz endpoints for the kubelet")
	fs.StringVar(&o.pprofAddr, "pprof-bind-address", o.pprofAddr, "address of net/http/pprof for heap and CPU profiles, unauthenticated: bind it to loopback and reach it with kubectl port-forward (\"0\" disables it)")
	lists.Var(fs, &p.Audiences, "audience", "comma-separated token audiences the proxy accepts")
	fs.DurationVar(&p.TokenReviewTTL, "tokenreview-ttl", p.TokenReviewTTL, "how long an accepted token is trusted without a new TokenReview (bounded by its expiry)")
	fs.DurationVar(&p.TokenReviewNegativeTTL, "tokenreview-negative-ttl", p.TokenReviewNegativeTTL, "how long a refused token is remembered")
	fs.IntVar(&p.MaxStreamsPerIdentity, "max-streams-per-identity", p.MaxStreamsPerIdentity, "concurrent transfers one ServiceAccount may have (0: unlimited)")
	fs.IntVar(&p.MaxStreamsPerConnector, "max-streams-per-connector", p.MaxStreamsPerConnector, "concurrent transfers through one connector (0: unlimited)")
	fs.IntVar(&p.MaxTokenFetches, "max-token-fetches", p.MaxTokenFetches, "concurrent token fetches per connector")
	fs.DurationVar(&p.StallTimeout, "stall-timeout", p.StallTimeout, "abort a transfer that moves no bytes for this long")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", o.drainTimeout, "on shutdown, how long in-flight transfers may finish")
	fs.StringVar(&o.forwardAddr, "forward-address", o.forwardAddr, "address of the forward proxy's plain-HTTP listener (HTTPS_PROXY=http://...; the install uses :3128; empty disables it)")
	fs.StringVar(&o.forwardTLSAddr, "forward-tls-address", o.forwardTLSAddr, "address of the forward proxy's TLS listener, for clients that send a token (the install uses :3129; empty disables it)")
	fs.StringVar(&fwd.InterceptCADir, "intercept-ca-dir", fwd.InterceptCADir, "directory with the interception CA's tls.crt and tls.key (an isCA certificate; re-read on rotation)")
	lists.Var(fs, &fwd.PermittedDomains, "intercept-permitted-domains", "comma-separated domains leaves may be minted for (should match the CA's name constraints); empty: any connector host")
	fs.StringVar((*string)(&fwd.TunnelMode), "tunnel-policy", string(fwd.TunnelMode), "CONNECTs to hosts other than connectors' registries: public (only public addresses), deny, or allowlist")
	lists.Var(fs, &fwd.TunnelAllow, "tunnel-allow", "comma-separated host names (.suffix) and CIDRs tunnels may reach even when not public")
	lists.Var(fs, &fwd.ClusterCIDRs, "cluster-cidrs", "comma-separated pod and service CIDRs, never reached by tunnels")
	fs.BoolVar(&fwd.PodIdentity, "pod-identity", fwd.PodIdentity, "identify forward-proxy callers without a credential by the source address of a running pod the webhook marked")
	return &lists
}
