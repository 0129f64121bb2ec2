package csi

import (
	"bytes"
	"os"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
)

// Options configure the node plugin (NewDriver, Server). DefaultOptions holds every default; the
// csi-driver's flags start from it, and so do the tests.
type Options struct {
	// Endpoint is the CSI socket the kubelet calls; RegistrationDir the kubelet's plugin
	// registration directory (empty: do not register).
	Endpoint, RegistrationDir string
	// NodeID is this node's name.
	NodeID string
	// Audience of the kubelet-issued token rendered into the files.
	Audience string
	// ForwardProxy and ForwardProxyTLS are the proxy's forward listeners, ReverseHost its
	// reverse listener's host[:port], as rendered into every volume.
	ForwardProxy, ForwardProxyTLS, ReverseHost string
	// CABundleFiles are the PEM files rendered into ca.crt, re-read on every publish.
	CABundleFiles []string
	// Tmpfs mounts each volume as its own tmpfs (Driver.Tmpfs).
	Tmpfs bool
}

// DefaultOptions are the driver's defaults (the install's values; the DaemonSet sets NODE_NAME
// from the pod's node).
func DefaultOptions() Options {
	return Options{
		Endpoint:        "/var/lib/kubelet/plugins/connectors-csi/csi.sock",
		RegistrationDir: "/var/lib/kubelet/plugins_registry",
		NodeID:          os.Getenv("NODE_NAME"),
		Audience:        policies.DefaultAudience,
		ForwardProxy:    policies.DefaultForwardProxyURL,
		ForwardProxyTLS: "https://" + policies.DefaultProxyHost + ":3129",
		ReverseHost:     policies.DefaultProxyHost,
		CABundleFiles:   []string{"/etc/connectors/proxy-ca/ca.crt", "/etc/connectors/intercept-ca/ca.crt"},
		Tmpfs:           true,
	}
}

// NewDriver builds the driver from o, reading connectors and namespaces through lookup.
func NewDriver(o Options, lookup access.Source) *Driver {
	return &Driver{
		NodeID: o.NodeID, Audience: o.Audience, Lookup: lookup,
		ForwardProxy: o.ForwardProxy, ForwardProxyTLS: o.ForwardProxyTLS, ReverseHost: o.ReverseHost,
		CABundle: bundleReader(o.CABundleFiles), Tmpfs: o.Tmpfs,
	}
}

// bundleReader concatenates the CA files on every call, so a rotated CA reaches the next publish.
func bundleReader(files []string) func() ([]byte, error) {
	return func() ([]byte, error) {
		var out bytes.Buffer
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out.Write(bytes.TrimSpace(b))
			out.WriteString("\n")
		}
		return out.Bytes(), nil
	}
}
