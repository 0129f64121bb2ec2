package policies

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCheckTunnel(t *testing.T) {
	cluster := mustCIDRs("10.96.0.0/12", "100.100.0.0/16")
	public := TunnelPolicy{Mode: TunnelPublic, ClusterCIDRs: cluster, Allow: []string{"mirror.internal", "192.168.7.0/24"}}
	ips := func(s ...string) []net.IP {
		var out []net.IP
		for _, v := range s {
			out = append(out, net.ParseIP(v))
		}
		return out
	}
	cases := []struct {
		name   string
		policy TunnelPolicy
		host   string
		ips    []net.IP
		ok     bool
	}{
		{"public address", public, "registry-1.docker.io", ips("54.236.113.205"), true},
		{"public IPv6", public, "pypi.org", ips("2a04:4e42::223"), true},
		{"cloud metadata", public, "169.254.169.254", ips("169.254.169.254"), false},
		{"private 10/8", public, "10.0.0.1", ips("10.0.0.1"), false},
		{"loopback", public, "127.0.0.1", ips("127.0.0.1"), false},
		{"IPv6 loopback", public, "::1", ips("::1"), false},
		{"v4-mapped loopback", public, "x", ips("::ffff:127.0.0.1"), false},
		{"cluster service range", public, "kubernetes.default", ips("10.96.0.1"), false},
		{"configured cluster range", public, "svc", ips("100.100.3.4"), false},
		{"name resolving to public and private", public, "rebind.example", ips("54.1.2.3", "10.1.2.3"), false},
		{"allowed name", public, "mirror.internal", ips("10.2.3.4"), true},
		{"allowed CIDR", public, "nexus", ips("192.168.7.9"), true},
		{"deny mode refuses public", TunnelPolicy{Mode: TunnelDeny}, "registry-1.docker.io", ips("54.236.113.205"), false},
		{"allow-list mode refuses unlisted public", TunnelPolicy{Mode: TunnelAllowList, Allow: []string{".example.org"}}, "docker.io", ips("54.1.1.1"), false},
		{"allow-list mode allows a listed suffix", TunnelPolicy{Mode: TunnelAllowList, Allow: []string{".example.org"}}, "a.example.org", ips("54.1.1.1"), true},
		{"no addresses", public, "nx.example", nil, false},
		// IPv6 ranges that embed an IPv4 address (issue 12, finding 7).
		{"local-use NAT64 is refused outright", public, "x", ips("64:ff9b:1::a9fe:a9fe"), false},
		{"local-use NAT64 with a public IPv4 is refused too", public, "x", ips("64:ff9b:1::808:808"), false},
		{"NAT64 embedding cloud metadata", public, "x", ips("64:ff9b::a9fe:a9fe"), false},
		{"NAT64 embedding loopback", public, "x", ips("64:ff9b::127.0.0.1"), false},
		{"NAT64 embedding a cluster address", public, "x", ips("64:ff9b::a60:1"), false},
		{"NAT64 embedding a public address", public, "dns.google", ips("64:ff9b::808:808"), true},
		{"6to4 embedding cloud metadata", public, "x", ips("2002:a9fe:a9fe::1"), false},
		{"6to4 embedding a private address", public, "x", ips("2002:0a00:0001::1"), false},
		{"6to4 embedding a public address", public, "x", ips("2002:0808:0808::1"), true},
		{"v4-mapped cloud metadata", public, "x", ips("::ffff:169.254.169.254"), false},
		{"v4-mapped public", public, "x", ips("::ffff:8.8.8.8"), true},
		{"v4-compatible cloud metadata", public, "x", ips("::a9fe:a9fe"), false},
		{"v4-compatible private", public, "x", ips("::10.0.0.1"), false},
		{"v4-compatible public", public, "x", ips("::808:808"), true},
		{"v4-translated cloud metadata", public, "x", ips("::ffff:0:a9fe:a9fe"), false},
		{"v4-translated public", public, "x", ips("::ffff:0:808:808"), true},
		{"Teredo is refused outright", public, "x", ips("2001:0:4136:e378:8000:63bf:3fff:fdd2"), false},
		{"allowed CIDR covers a NAT64 range", TunnelPolicy{Mode: TunnelPublic, Allow: []string{"64:ff9b:1::/48"}}, "x", ips("64:ff9b:1::a9fe:a9fe"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.CheckTunnel(tc.host, tc.ips)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

// The refusal names the embedded address and why it is refused, so an operator can act.
func TestCheckTunnelNamesEmbeddedIPv4(t *testing.T) {
	public := TunnelPolicy{Mode: TunnelPublic}
	err := public.CheckTunnel("x", []net.IP{net.ParseIP("64:ff9b::a9fe:a9fe")})
	assert.EqualError(t, err, "x resolves to 64:ff9b::a9fe:a9fe, a NAT64 address (64:ff9b::/96) embedding 169.254.169.254, "+
		"not a public address (169.254.0.0/16): tunnels reach only public addresses (add it to --tunnel-allow to permit it)")
	err = public.CheckTunnel("x", []net.IP{net.ParseIP("2002:a9fe:a9fe::1")})
	assert.ErrorContains(t, err, "a 6to4 address (2002::/16) embedding 169.254.169.254")
	err = public.CheckTunnel("x", []net.IP{net.ParseIP("64:ff9b:1::a9fe:a9fe")})
	assert.ErrorContains(t, err, "the local-use NAT64 prefix (64:ff9b:1::/48), whose embedded IPv4 address depends on the operator's prefix length")
	err = public.CheckTunnel("x", []net.IP{net.ParseIP("::a9fe:a9fe")})
	assert.ErrorContains(t, err, "an IPv4-compatible address (::/96) embedding 169.254.169.254")
}
