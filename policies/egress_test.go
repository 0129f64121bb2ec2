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
