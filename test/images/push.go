package images

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Transport is what Push talks to registries with: TLS verified against the system roots plus
// the PEM certificates in caFile (empty: none), and plain HTTP only to a loopback host.
// go-containerregistry itself falls back to HTTP for private (RFC 1918) and .local addresses
// too; the guard refuses those, so a registry on the network is never reached in clear.
func Transport(caFile string) (http.RoundTripper, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("loading the system CA certificates: %w", err)
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("REGISTRY_CA=%s: %w", caFile, err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("REGISTRY_CA=%s holds no PEM certificate: give the registry's CA certificate in PEM form", caFile)
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return loopbackOnlyHTTP{t}, nil
}

type loopbackOnlyHTTP struct{ next http.RoundTripper }

func (t loopbackOnlyHTTP) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !isLoopback(r.URL.Hostname()) {
		return nil, fmt.Errorf("refusing plain HTTP to %s: only a loopback registry (127.0.0.1, localhost, ::1) is reached without TLS; serve it over HTTPS and give its CA with REGISTRY_CA", r.URL.Host)
	}
	return t.next.RoundTrip(r)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Pushed is where Push put one image.
type Pushed struct {
	Name   string      // the image's name (manager, proxy, csi-driver)
	Digest name.Digest // <registry>/<name>@sha256:... of its index
}

// Push pushes each image as <registry>/<name>:<tag> and its SBOMs beside it under cosign's
// sha256-<hex>.sbom tags, and returns the index digests in image order. registry is a
// repository prefix such as 127.0.0.1:5000/harbor-connector or ghcr.io/me/harbor-connector;
// credentials come from the Docker config (`docker login`, `crane auth login`).
func Push(ctx context.Context, registry, tag string, imgs []*Image, rt http.RoundTripper) ([]Pushed, error) {
	var out []Pushed
	for _, img := range imgs {
		repo, err := repository(registry, img.Name)
		if err != nil {
			return nil, err
		}
		opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt),
			remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithUserAgent("harbor-connector-make-images")}
		if err := remote.WriteIndex(repo.Tag(tag), img.Index, opts...); err != nil {
			return nil, fmt.Errorf("pushing %s:%s: %w", repo, tag, err)
		}
		for _, s := range img.SBOMs {
			if err := remote.Write(repo.Tag(SBOMTag(s.Subject)), s.Image, opts...); err != nil {
				return nil, fmt.Errorf("pushing the SBOM %s:%s: %w", repo, SBOMTag(s.Subject), err)
			}
		}
		d, err := img.Index.Digest()
		if err != nil {
			return nil, err
		}
		out = append(out, Pushed{Name: img.Name, Digest: repo.Digest(d.String())})
	}
	return out, nil
}

// repository parses <registry>/<name>. A loopback registry is marked insecure, which lets
// go-containerregistry fall back to plain HTTP for it (a local `registry:2` has no TLS).
func repository(registry, imgName string) (name.Repository, error) {
	registry = strings.TrimSuffix(registry, "/")
	s := registry + "/" + imgName
	var opts []name.Option
	if r, err := name.NewRegistry(strings.SplitN(registry, "/", 2)[0]); err == nil {
		host := r.RegistryStr()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if isLoopback(strings.Trim(host, "[]")) {
			opts = append(opts, name.Insecure)
		}
	}
	repo, err := name.NewRepository(s, append(opts, name.StrictValidation)...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("REGISTRY=%s: %q is not a repository (want host[:port]/path in lower case, e.g. 127.0.0.1:5000/harbor-connector): %w", registry, s, err)
	}
	return repo, nil
}
