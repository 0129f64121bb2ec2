package policies

import (
	"fmt"
	"net"
	"strings"
)

// TunnelMode says where the forward proxy tunnels CONNECTs that are not to a connector's
// registry (a build's FROM docker.io/..., package mirrors): never with credentials, never
// intercepted.
type TunnelMode string

// Tunnel modes.
const (
	// TunnelPublic (default) tunnels only to public addresses (plus the allow-list).
	TunnelPublic TunnelMode = "public"
	// TunnelDeny tunnels nothing but connector hosts.
	TunnelDeny TunnelMode = "deny"
	// TunnelAllowList tunnels only to the allow-list.
	TunnelAllowList TunnelMode = "allowlist"
)

// TunnelPolicy decides which non-connector targets may be tunnelled.
type TunnelPolicy struct {
	Mode TunnelMode
	// Allow lists host names (exact, or ".suffix") and CIDRs that may be tunnelled even when
	// they are not public (e.g. an internal mirror).
	Allow []string
	// ClusterCIDRs are the cluster's pod and service ranges: never public.
	ClusterCIDRs []*net.IPNet
}

// nonPublic are the ranges no tunnel reaches unless allowed: loopback, private, link-local
// (cloud metadata at 169.254.169.254), CGNAT, unspecified, multicast, documentation and
// benchmarking ranges, IPv6 ULA and link-local.
var nonPublic = mustCIDRs("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
	"192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
	"224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32", "64:ff9b::/96")

func mustCIDRs(cidrs ...string) []*net.IPNet {
	out := make([]*net.IPNet, 0, len(cidrs))
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			panic(err)
		}
		out = append(out, n)
	}
	return out
}

// CheckTunnel decides whether host (as the client named it), resolved to ips, may be tunnelled.
// Every resolved address must pass, so a name cannot smuggle a private address in among public
// ones; the caller must then dial one of exactly these addresses (no second lookup, no DNS
// rebinding).
func (p TunnelPolicy) CheckTunnel(host string, ips []net.IP) error {
	if len(ips) == 0 {
		return fmt.Errorf("%s does not resolve", host)
	}
	if p.Mode == TunnelDeny {
		return fmt.Errorf("tunnels to hosts other than connectors' registries are disabled (--tunnel-policy=deny)")
	}
	if p.allowedName(host) {
		return nil
	}
	for _, ip := range ips {
		if p.allowedIP(ip) {
			continue
		}
		if p.Mode == TunnelAllowList {
			return fmt.Errorf("%s is not on the tunnel allow-list", host)
		}
		if why := p.nonPublic(ip); why != "" {
			return fmt.Errorf("%s resolves to %s, %s: tunnels reach only public addresses (add it to --tunnel-allow to permit it)", host, ip, why)
		}
	}
	return nil
}

func (p TunnelPolicy) allowedName(host string) bool {
	h := strings.ToLower(host)
	for _, a := range p.Allow {
		a = strings.ToLower(a)
		if strings.Contains(a, "/") {
			continue
		}
		if h == a || (strings.HasPrefix(a, ".") && strings.HasSuffix(h, a)) {
			return true
		}
	}
	return false
}

func (p TunnelPolicy) allowedIP(ip net.IP) bool {
	for _, a := range p.Allow {
		if _, n, err := net.ParseCIDR(a); err == nil && n.Contains(ip) {
			return true
		}
		if allowed := net.ParseIP(a); allowed != nil && allowed.Equal(ip) {
			return true
		}
	}
	return false
}

func (p TunnelPolicy) nonPublic(ip net.IP) string {
	for _, n := range p.ClusterCIDRs {
		if n.Contains(ip) {
			return "a cluster address"
		}
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	for _, n := range nonPublic {
		if n.Contains(ip) {
			return "not a public address (" + n.String() + ")"
		}
	}
	return ""
}

// HostPermitted reports whether a registry host may be intercepted under an install-time list of
// permitted domains (the interception CA's name constraints): the domain itself or any
// subdomain. An empty list permits every host.
func HostPermitted(host string, domains []string) bool {
	if len(domains) == 0 {
		return true
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, d := range domains {
		d = strings.ToLower(strings.TrimPrefix(d, "."))
		if h == d || strings.HasSuffix(h, "."+d) {
			return true
		}
	}
	return false
}
