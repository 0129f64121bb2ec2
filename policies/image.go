package policies

import (
	"fmt"
	"net"
	"strings"

	"github.com/distribution/reference"
)

// Docker Hub answers under several names; image references normalise to docker.io.
var dockerHubAliases = map[string]bool{"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true}

// RegistryHost is a registry's identity as image references name it: the host[:port] of a
// connector's address, lower-cased, without the scheme's default port, Docker Hub's aliases
// folded to docker.io. Two connectors with the same RegistryHost are ambiguous for images.
type RegistryHost struct {
	Host   string // normalised host[:port]
	Scheme string // http or https, deciding which port is the default
}

// Matches reports whether an image reference's registry domain is this registry.
func (h RegistryHost) Matches(domain string) bool {
	return normaliseDomain(domain, h.Scheme) == h.Host
}

func normaliseDomain(domain, scheme string) string {
	d := strings.ToLower(domain)
	if host, port, err := net.SplitHostPort(d); err == nil {
		if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
			d = host
		}
	}
	if dockerHubAliases[d] {
		return "docker.io"
	}
	return d
}

// Image is a parsed container image reference, keeping the tag and digest exactly as written.
type Image struct {
	Domain string // registry domain as written (or docker.io when omitted)
	Path   string // repository path within the registry (library/nginx for "nginx")
	Tag    string // "" when the reference has no tag
	Digest string // "" when the reference has no digest
}

// ParseImage parses an image reference as the kubelet would (distribution/reference with Docker
// Hub normalisation).
func ParseImage(image string) (Image, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return Image{}, err
	}
	img := Image{Domain: reference.Domain(named), Path: reference.Path(named)}
	if t, ok := named.(reference.Tagged); ok {
		img.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		img.Digest = d.Digest().String()
	}
	return img, nil
}

// String rebuilds the reference: domain/path[:tag][@digest]. No tag is ever added.
func (i Image) String() string {
	s := i.Domain + "/" + i.Path
	if i.Tag != "" {
		s += ":" + i.Tag
	}
	if i.Digest != "" {
		s += "@" + i.Digest
	}
	return s
}

// ProxyPath is the path prefix, under the proxy's /v2/, that serves a connector's registry:
// namespaces/<ns>/connectors/<name>. The webhook writes it into images, the proxy routes on it.
func ProxyPath(ref ConnectorRef) string {
	return "namespaces/" + ref.Namespace + "/connectors/" + ref.Name
}

// ParseProxyPath splits a repository path written by RewriteImage back into the connector and
// the repository path on the registry. ok is false for paths that are not in that form.
func ParseProxyPath(path string) (ref ConnectorRef, repository string, ok bool) {
	parts := strings.SplitN(path, "/", 5)
	if len(parts) != 5 || parts[0] != "namespaces" || parts[2] != "connectors" || parts[1] == "" || parts[3] == "" || parts[4] == "" {
		return ConnectorRef{}, "", false
	}
	return ConnectorRef{Namespace: parts[1], Name: parts[3]}, parts[4], true
}

// RewriteImage points an image of a connector's registry at the pull host:
// <pullHost>/namespaces/<ns>/connectors/<name>/<path>, with tag and digest as written. It fails
// when the result's repository path exceeds the distribution spec's 255 characters.
func RewriteImage(img Image, pullHost string, ref ConnectorRef) (string, error) {
	out := Image{Domain: pullHost, Path: ProxyPath(ref) + "/" + img.Path, Tag: img.Tag, Digest: img.Digest}
	if len(out.Path) > reference.RepositoryNameTotalLengthMax {
		return "", fmt.Errorf("image %s through connector %s would have a %d-character repository path (%s), over the registry limit of %d: shorten the repository name",
			img, ref, len(out.Path), out.Path, reference.RepositoryNameTotalLengthMax)
	}
	if _, err := reference.ParseNormalizedNamed(out.String()); err != nil {
		return "", fmt.Errorf("image %s through connector %s: the rewritten reference %s is invalid: %v", img, ref, out, err)
	}
	return out.String(), nil
}
