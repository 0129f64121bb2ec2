package wiring

import (
	"crypto/tls"
	"flag"

	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// MetricsFlags are every binary's metrics flags.
type MetricsFlags struct {
	// BindAddress is where /metrics is served; "0" disables it.
	BindAddress string
	// Secure serves HTTPS and lets in only callers whose token the API server accepts
	// (TokenReview) and who may `get` the non-resource URL /metrics (SubjectAccessReview).
	Secure bool
}

// DefaultMetricsFlags are a binary's metrics defaults: served on addr, secure.
func DefaultMetricsFlags(addr string) MetricsFlags {
	return MetricsFlags{BindAddress: addr, Secure: true}
}

// Bind registers --metrics-bind-address and --metrics-secure, their defaults m's values.
func (m *MetricsFlags) Bind(fs *flag.FlagSet) {
	fs.StringVar(&m.BindAddress, "metrics-bind-address", m.BindAddress, "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.BoolVar(&m.Secure, "metrics-secure", m.Secure, "serve /metrics over HTTPS (self-signed certificate) to callers whose ServiceAccount token the API server accepts and who may get the non-resource URL /metrics (ClusterRole connectors-metrics-reader); false: plain HTTP, no authentication (development only)")
}

// Options are the metrics server's options, as kubebuilder projects serve metrics: HTTPS with
// authentication and authorisation through the API server (MetricsAuth; the binary's account
// needs `create` on tokenreviews and subjectaccessreviews), HTTP/1.1 only.
func (m MetricsFlags) Options() metricsserver.Options {
	return MetricsOptions(m.BindAddress, m.Secure)
}

// MetricsOptions: see MetricsFlags.Options.
func MetricsOptions(bindAddress string, secure bool) metricsserver.Options {
	o := metricsserver.Options{BindAddress: bindAddress}
	if !secure {
		return o
	}
	o.SecureServing = true
	o.FilterProvider = MetricsAuth
	// HTTP/2 stays off, as in kubebuilder's scaffold: its stream handling has been the target of
	// denial-of-service attacks (CVE-2023-44487, CVE-2023-39325), and a scrape needs none of it.
	o.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	return o
}
