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
// benchmarking ranges, IPv6 ULA and link-local. IPv6 ranges that embed an IPv4 address are
// judged by that address (embeddedIPv4), or refused outright (refusedTunnelRanges).
var nonPublic = mustCIDRs("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
	"192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
	"224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32")

// refusedTunnelRanges are IPv6 ranges that reach IPv4 addresses this policy does not decode
// (where the IPv4 address sits is the operator's choice, or obfuscated), so no tunnel reaches
// them unless allowed.
var refusedTunnelRanges = []struct {
	net *net.IPNet
	why string
}{
	// RFC 8215: the operator picks the NAT64 prefix length (/48 to /96), which decides where
	// the IPv4 address sits; 64:ff9b:1::a9fe:a9fe reaches 169.254.169.254 behind a /96 gateway.
	{mustCIDRs("64:ff9b:1::/48")[0], "the local-use NAT64 prefix (64:ff9b:1::/48), whose embedded IPv4 address depends on the operator's prefix length"},
	// RFC 4380: Teredo carries the client's IPv4 address (inverted) and its server's IPv4 address.
	{mustCIDRs("2001::/32")[0], "a Teredo address (2001::/32), which tunnels to embedded IPv4 addresses"},
}

// embeddedIPv4 returns the IPv4 address an IPv6 address delivers to, for the ranges whose
// embedding is fixed, with the range's name: the NAT64 well-known prefix 64:ff9b::/96 (RFC
// 6052, the last 32 bits), 6to4 2002::/16 (RFC 3056, bits 16 to 48), IPv4-translated
// ::ffff:0:0/96 (RFC 2765) and IPv4-compatible ::/96 (RFC 4291, deprecated, still routed by
// automatic tunnels). IPv4-mapped ::ffff:0:0/96 is an IPv4 address already (net.IP.To4).
func embeddedIPv4(ip net.IP) (net.IP, string) {
	ip16 := ip.To16()
	if ip16 == nil || ip.To4() != nil {
		return nil, ""
	}
	zero := func(b []byte) bool {
		for _, x := range b {
			if x != 0 {
				return false
			}
		}
		return true
	}
	switch {
	case ip16[0] == 0x00 && ip16[1] == 0x64 && ip16[2] == 0xff && ip16[3] == 0x9b && zero(ip16[4:12]):
		return net.IP(append([]byte(nil), ip16[12:16]...)), "a NAT64 address (64:ff9b::/96)"
	case ip16[0] == 0x20 && ip16[1] == 0x02:
		return net.IP(append([]byte(nil), ip16[2:6]...)), "a 6to4 address (2002::/16)"
	case zero(ip16[0:8]) && ip16[8] == 0xff && ip16[9] == 0xff && ip16[10] == 0 && ip16[11] == 0:
		return net.IP(append([]byte(nil), ip16[12:16]...)), "an IPv4-translated address (::ffff:0:0/96)"
	case zero(ip16[0:12]):
		return net.IP(append([]byte(nil), ip16[12:16]...)), "an IPv4-compatible address (::/96)"
	}
	return nil, ""
}

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
		ip = v4 // IPv4-mapped (::ffff:a.b.c.d) is the IPv4 address itself
	}
	for _, n := range nonPublic {
		if n.Contains(ip) {
			return "not a public address (" + n.String() + ")"
		}
	}
	for _, r := range refusedTunnelRanges {
		if r.net.Contains(ip) {
			return r.why
		}
	}
	if v4, kind := embeddedIPv4(ip); v4 != nil {
		if why := p.nonPublic(v4); why != "" {
			return kind + " embedding " + v4.String() + ", " + why
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
