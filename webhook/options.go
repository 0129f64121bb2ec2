package webhook

import "github.com/alauda/harbor-connector/policies"

// Options configure the manager's admission webhook. DefaultOptions holds every default; the
// manager's flags start from it, and the golden tests from its Injection.
type Options struct {
	// Port and CertDir are the webhook's HTTPS server (NewServer).
	Port    int
	CertDir string
	// Injection is what every mutation injects (Injector.Config); the manager adds the API
	// server's host to its NoProxy.
	Injection policies.InjectionConfig
}

// DefaultOptions are the webhook's defaults (the install's values).
func DefaultOptions() Options {
	return Options{
		Port:    9443,
		CertDir: "/tmp/k8s-webhook-server/serving-certs",
		Injection: policies.InjectionConfig{
			ForwardProxyURL: policies.DefaultForwardProxyURL,
			PullHost:        policies.DefaultPullHost,
		},
	}
}
