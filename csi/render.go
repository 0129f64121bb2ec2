package csi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/alauda/harbor-connector/policies"
)

// Files the volume holds (seed product names, so existing scripts keep working).
const (
	FileEnv          = ".env"
	FileHTTPProxy    = "http.proxy"
	FileHTTPSProxy   = "https.proxy"
	FileToken        = "context.token"
	FileProxyAddress = "connector.status.proxyAddress"
	FileBuildkitd    = "buildkitd.toml"
)

// ConnectorInfo is what rendering needs to know about one connector.
type ConnectorInfo struct {
	Ref policies.ConnectorRef
	// ProxyAddress is the Connector's status.proxy.httpAddress.url.
	ProxyAddress string
}

// RenderInput is everything one publish renders from.
type RenderInput struct {
	Connectors []ConnectorInfo
	// Token is the pod-bound ServiceAccount token the kubelet handed to this publish.
	Token string
	// ForwardProxy and ForwardProxyTLS are the forward listeners (http://...:3128,
	// https://...:3129); the token-carrying URLs are built from them.
	ForwardProxy, ForwardProxyTLS string
	// ReverseHost is the reverse proxy's host[:port], for config.json and buildkitd.toml.
	ReverseHost string
	// CABundle is the PEM bundle clients must trust: the proxy's serving CA and the interception
	// CA (old and new during a rotation).
	CABundle []byte
	// Configurations are the configuration names to render.
	Configurations []string
}

// Render produces the volume's files. The first connector (sorted) is the one the proxy URLs name;
// config.json covers the reverse proxy host, where the connector is part of every image name.
func Render(in RenderInput) (map[string][]byte, error) {
	if len(in.Connectors) == 0 {
		return nil, fmt.Errorf("no connector to render files for")
	}
	if in.Token == "" {
		return nil, fmt.Errorf("the kubelet passed no ServiceAccount token: the CSIDriver needs tokenRequests for audience connectors-proxy")
	}
	conns := append([]ConnectorInfo(nil), in.Connectors...)
	sort.Slice(conns, func(i, j int) bool { return conns[i].Ref.String() < conns[j].Ref.String() })
	primary := conns[0]
	user := primary.Ref.String()

	files := map[string][]byte{
		FileToken:           []byte(in.Token),
		FileProxyAddress:    []byte(primary.ProxyAddress),
		policies.FileCACert: in.CABundle,
		path.Join(policies.DirCerts, "connectors-ca.pem"): in.CABundle,
	}
	hashed, err := hashedCertFiles(in.CABundle)
	if err != nil {
		return nil, err
	}
	for name, pemBytes := range hashed {
		files[path.Join(policies.DirCerts, name)] = pemBytes
	}
	httpProxy, err := withCredentials(in.ForwardProxy, user, in.Token)
	if err != nil {
		return nil, fmt.Errorf("forward proxy address: %w", err)
	}
	httpsProxy, err := withCredentials(in.ForwardProxyTLS, user, in.Token)
	if err != nil {
		return nil, fmt.Errorf("TLS forward proxy address: %w", err)
	}
	files[FileHTTPProxy] = []byte(httpProxy)
	files[FileHTTPSProxy] = []byte(httpsProxy)
	files[FileEnv] = []byte(fmt.Sprintf("HTTP_PROXY=%s\nHTTPS_PROXY=%s\nhttp_proxy=%s\nhttps_proxy=%s\n", httpsProxy, httpsProxy, httpsProxy, httpsProxy))

	for _, c := range in.Configurations {
		switch c {
		case ConfigRegistry:
			auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + in.Token))
			b, err := json.MarshalIndent(map[string]any{"auths": map[string]any{in.ReverseHost: map[string]string{"auth": auth}}}, "", "  ")
			if err != nil {
				return nil, err
			}
			files[policies.FileDockerConfig] = b
		case ConfigBuildkitd:
			files[FileBuildkitd] = buildkitdConfig(in.ReverseHost)
		default:
			return nil, fmt.Errorf("unknown configuration %q", c)
		}
	}
	return files, nil
}

// BuildkitdMountPath is where the seed product's recipes mount the buildkitd configuration
// (BUILDKITD_FLAGS=--config /etc/buildkit/buildkitd.toml): buildkitd's default directory.
const BuildkitdMountPath = "/etc/buildkit"

// buildkitdConfig trusts the proxy's CA for the reverse host. buildkitd reads a `ca` path as
// written and fails the whole build when it is missing, and the driver cannot know where a pod
// mounts the volume; `tlsconfigdir` directories are read for *.crt and skipped when absent. So
// the file names the volume's containers-ca directory under both mount points in use: the
// webhook's and the seed recipes' /etc/buildkit. It is re-read per build, and containers-ca is
// updated in place, so a long-lived buildkitd follows CA renewals.
func buildkitdConfig(reverseHost string) []byte {
	dirs := []string{path.Join(policies.MountPath, policies.DirContainersCA), path.Join(BuildkitdMountPath, policies.DirContainersCA)}
	return []byte(fmt.Sprintf("[registry.%q]\n  tlsconfigdir = [%q, %q]\n", reverseHost, dirs[0], dirs[1]))
}

// withCredentials puts <ns>%2F<connector>:<token> into a proxy URL's userinfo.
func withCredentials(raw, user, token string) (string, error) {
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%q is not a URL", raw)
	}
	// url.UserPassword escapes "/" in the username as %2F, the seed product's form.
	u.User = url.UserPassword(user, token)
	return strings.TrimSuffix(u.String(), "/"), nil
}
