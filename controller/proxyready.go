package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
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
	// RootCAFile is a PEM bundle that verifies the proxy's serving certificate; empty means the
	// system roots. It is re-read at every check, so a renewed proxy CA (cert-manager rotates
	// the self-signed one with a new key) is trusted without restarting the manager.
	RootCAFile string
	// CacheFor is how long one answer is reused.
	CacheFor time.Duration
	// PermittedDomains is the install-time list the interception CA is constrained to; a
	// Connector whose host is outside it cannot be intercepted by the forward proxy.
	PermittedDomains []string

	client   *http.Client
	clientCA []byte

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

// httpClient returns the client for the proxy, rebuilt when the CA file's content changed.
// Called with p.mu held.
func (p *ProxyChecker) httpClient() (*http.Client, error) {
	var pem []byte
	var roots *x509.CertPool
	if p.RootCAFile != "" {
		var err error
		if pem, err = os.ReadFile(p.RootCAFile); err != nil {
			return nil, fmt.Errorf("reading --proxy-ca-file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--proxy-ca-file %s holds no PEM certificate", p.RootCAFile)
		}
	}
	if p.client != nil && bytes.Equal(pem, p.clientCA) {
		return p.client, nil
	}
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
	p.client = &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	p.clientCA = pem
	return p.client, nil
}

func (p *ProxyChecker) probe(ctx context.Context) ProbeResult {
	client, err := p.httpClient()
	if err != nil {
		return ProbeResult{Reason: v1alpha1.ReasonProxyUnavailable, Message: err.Error() + ": fix the manager's proxy CA bundle"}
	}
	target := p.ReadinessURL
	if target == "" {
		target = p.Address + "/readyz"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return ProbeResult{Reason: v1alpha1.ReasonProxyUnavailable, Message: fmt.Sprintf("proxy readiness URL %q: %v: fix --proxy-readiness-url", target, err)}
	}
	resp, err := client.Do(req)
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
		if a, err := policies.ParseAddress(c.Spec.Address); err == nil && !policies.HostPermitted(a.Hostname, p.PermittedDomains) {
			return ProbeResult{Reason: v1alpha1.ReasonHostNotPermitted, Message: fmt.Sprintf(
				"host %s is outside the interception CA's permitted domains %v, so the forward proxy cannot intercept it: add the domain to the install's permitted domains (and the CA's name constraints) or use the reverse proxy address",
				a.Hostname, p.PermittedDomains)}
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
