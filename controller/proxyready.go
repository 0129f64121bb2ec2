package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// ProxyChecker reports whether the proxy answers its readiness endpoint. Every Connector shares
// the proxy, so one answer is cached briefly instead of asking once per Connector.
type ProxyChecker struct {
	// Address is the proxy's base URL as workloads reach it; empty means no proxy is configured.
	Address string
	// ReadinessURL is the proxy's readiness endpoint (default Address + "/readyz").
	ReadinessURL string
	// RootCAs verifies the proxy's serving certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// CacheFor is how long one answer is reused.
	CacheFor time.Duration
	// PermittedDomains is the install-time list the interception CA is constrained to; a
	// Connector whose host is outside it cannot be intercepted by the forward proxy.
	PermittedDomains []string

	once   sync.Once
	client *http.Client

	mu      sync.Mutex
	checked time.Time
	last    ProbeResult
}

// Check returns the proxy's readiness as a ProxyReady outcome.
func (p *ProxyChecker) Check(ctx context.Context) ProbeResult {
	if p == nil || p.Address == "" {
		return ProbeResult{Reason: v1alpha1.ReasonProxyNotConfigured,
			Message: "the manager runs without --proxy-address, so workloads have no proxy to reach this connector through"}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.checked.IsZero() && time.Since(p.checked) < p.CacheFor {
		return p.last
	}
	p.last = p.probe(ctx)
	p.checked = time.Now()
	return p.last
}

func (p *ProxyChecker) probe(ctx context.Context) ProbeResult {
	p.once.Do(func() {
		p.client = &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: p.RootCAs, MinVersion: tls.VersionTLS12},
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	target := p.ReadinessURL
	if target == "" {
		target = p.Address + "/readyz"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return ProbeResult{Reason: v1alpha1.ReasonProxyUnavailable, Message: fmt.Sprintf("proxy readiness URL %q: %v: fix --proxy-readiness-url", target, err)}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return ProbeResult{Reason: v1alpha1.ReasonProxyUnavailable, Message: fmt.Sprintf("proxy readiness check failed: %v: check the connectors-proxy Deployment", err)}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ProbeResult{Reason: v1alpha1.ReasonProxyUnavailable, Message: fmt.Sprintf("proxy readiness endpoint %s answered HTTP %d: check the connectors-proxy pods' logs", target, resp.StatusCode)}
	}
	return ProbeResult{OK: true, Reason: v1alpha1.ReasonProxyAvailable, Message: "the proxy answers its readiness endpoint"}
}

// CheckConnector is Check plus the connector's own fitness for the proxy: its registry host must
// be within the interception CA's permitted domains.
func (p *ProxyChecker) CheckConnector(ctx context.Context, c *v1alpha1.Connector) ProbeResult {
	if p != nil && len(p.PermittedDomains) > 0 {
		if u, err := url.Parse(c.Spec.Address); err == nil && !policies.HostPermitted(u.Hostname(), p.PermittedDomains) {
			return ProbeResult{Reason: v1alpha1.ReasonHostNotPermitted, Message: fmt.Sprintf(
				"host %s is outside the interception CA's permitted domains %v, so the forward proxy cannot intercept it: add the domain to the install's permitted domains (and the CA's name constraints) or use the reverse proxy address",
				u.Hostname(), p.PermittedDomains)}
		}
	}
	return p.Check(ctx)
}

// ConnectorURL is the connector's reverse-proxy prefix, published in status.proxy.httpAddress.url.
func (p *ProxyChecker) ConnectorURL(c *v1alpha1.Connector) string {
	if p == nil || p.Address == "" {
		return ""
	}
	return fmt.Sprintf("%s/namespaces/%s/connectors/%s", p.Address, c.Namespace, c.Name)
}
