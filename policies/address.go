package policies

import (
	"fmt"
	"net/url"
)

// Address is a Connector's spec.address, parsed once for every part that needs it: the origin
// credentials may go to (the controller's probes, the proxy's upstream), the registry host that
// image references name (the webhook's rewriting, the forward proxy's interception) and the bare
// host name (the interception CA's permitted domains).
type Address struct {
	// Origin is scheme://host[:port]: the registry API and Harbor's API live there, whatever path
	// the address carries.
	Origin *url.URL
	// Registry is the host as image references name it.
	Registry RegistryHost
	// Hostname is the host without port, as written.
	Hostname string
}

// ParseAddress reads a Connector's spec.address; the error names the field and the fix.
func ParseAddress(address string) (Address, error) {
	u, err := url.Parse(address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Address{}, fmt.Errorf("spec.address %q is not an http(s) URL with a host: set it to e.g. https://harbor.example.com", address)
	}
	return Address{
		Origin:   &url.URL{Scheme: u.Scheme, Host: u.Host},
		Registry: RegistryHost{Host: normaliseDomain(u.Host, u.Scheme), Scheme: u.Scheme},
		Hostname: u.Hostname(),
	}, nil
}

// OriginOf is ParseAddress(address).Origin.
func OriginOf(address string) (*url.URL, error) {
	a, err := ParseAddress(address)
	return a.Origin, err
}

// RegistryHostOf is ParseAddress(address).Registry.
func RegistryHostOf(address string) (RegistryHost, error) {
	a, err := ParseAddress(address)
	return a.Registry, err
}
