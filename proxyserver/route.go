package proxyserver

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/alauda/harbor-connector/policies"
)

// Kind is the OCI distribution endpoint a request addresses.
type Kind string

// The endpoints the proxy forwards. Everything else (_catalog, the UI) is refused.
const (
	KindManifest  Kind = "manifests"
	KindBlob      Kind = "blobs"
	KindUpload    Kind = "blobs/uploads"
	KindTags      Kind = "tags/list"
	KindReferrers Kind = "referrers"
)

var (
	anchoredTag = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)
	// uploadID is what registries put after blobs/uploads/: a UUID, or opaque state.
	uploadID = regexp.MustCompile(`^[A-Za-z0-9_.=-]{1,512}$`)
)

// Route is a parsed registry request: which connector, which repository on the registry, which
// endpoint and the rest of the path (a tag or digest, an upload ID).
type Route struct {
	Connector  policies.ConnectorRef
	Repository string
	Kind       Kind
	Rest       string
}

// UpstreamPath is the request's path on the registry: /v2/<repository>/<kind>[/<rest>].
func (r Route) UpstreamPath() string {
	p := "/v2/" + r.Repository + "/" + string(r.Kind)
	switch {
	case r.Rest != "":
		p += "/" + r.Rest
	case r.Kind == KindUpload:
		p += "/"
	}
	return p
}

// routeError is a request the proxy refuses before it reaches a registry.
type routeError struct {
	code, message string
}

func (e *routeError) Error() string { return e.message }

// ParseReversePath parses /v2/namespaces/<ns>/connectors/<name>/<repository>/<kind>/<rest>.
func ParseReversePath(path string) (Route, error) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return Route{}, &routeError{codeNameInvalid, fmt.Sprintf("path %q is not under /v2/", path)}
	}
	ref, repoPath, ok := policies.ParseProxyPath(rest)
	if !ok {
		return Route{}, &routeError{codeNameInvalid, fmt.Sprintf("path %q is not /v2/namespaces/<namespace>/connectors/<connector>/<repository>/...: use the image name the webhook wrote, or <proxy>/namespaces/<ns>/connectors/<name>/<project>/<repo>", path)}
	}
	route, err := parseRepositoryPath(repoPath)
	if err != nil {
		return Route{}, err
	}
	// Clients see the prefixed name; the distribution spec caps names at 255 characters.
	if n := len(policies.ProxyPath(ref)) + 1 + len(route.Repository); n > reference.RepositoryNameTotalLengthMax {
		return Route{}, &routeError{codeNameInvalid, fmt.Sprintf("repository name %s/%s is %d characters, over the limit of %d", policies.ProxyPath(ref), route.Repository, n, reference.RepositoryNameTotalLengthMax)}
	}
	route.Connector = ref
	return route, nil
}

// ParseNativePath parses /v2/<repository>/<kind>/<rest>, the registry's own layout (forward mode).
func ParseNativePath(path string) (Route, error) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return Route{}, &routeError{codeNameInvalid, fmt.Sprintf("path %q is not under /v2/", path)}
	}
	return parseRepositoryPath(rest)
}

// parseRepositoryPath splits "<repository>/<kind>/<rest>". Repository components may themselves
// be words like "blobs", so the endpoint is matched from the end, as the registry's router does.
func parseRepositoryPath(p string) (Route, error) {
	segs := strings.Split(p, "/")
	n := len(segs)
	var r Route
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		r = Route{Repository: join(segs[:n-2]), Kind: KindTags}
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		r = Route{Repository: join(segs[:n-3]), Kind: KindUpload, Rest: segs[n-1]}
		if r.Rest != "" && !uploadID.MatchString(r.Rest) {
			return Route{}, &routeError{codeBlobUploadInvalid, fmt.Sprintf("upload ID %q is malformed", r.Rest)}
		}
	case n >= 3 && segs[n-2] == "manifests":
		r = Route{Repository: join(segs[:n-2]), Kind: KindManifest, Rest: segs[n-1]}
		if !anchoredTag.MatchString(r.Rest) && digest.Digest(r.Rest).Validate() != nil {
			return Route{}, &routeError{codeManifestInvalid, fmt.Sprintf("manifest reference %q is neither a tag nor a digest", r.Rest)}
		}
	case n >= 3 && (segs[n-2] == "blobs" || segs[n-2] == "referrers"):
		r = Route{Repository: join(segs[:n-2]), Kind: Kind(segs[n-2]), Rest: segs[n-1]}
		if digest.Digest(r.Rest).Validate() != nil {
			return Route{}, &routeError{codeDigestInvalid, fmt.Sprintf("%q is not a digest", r.Rest)}
		}
	default:
		return Route{}, &routeError{codeUnsupported, fmt.Sprintf("path %q is not a registry endpoint the proxy serves (manifests, blobs, blobs/uploads, tags/list, referrers)", "/v2/"+p)}
	}
	if r.Repository == "" || len(r.Repository) > reference.RepositoryNameTotalLengthMax {
		return Route{}, &routeError{codeNameInvalid, fmt.Sprintf("repository name %q is empty or longer than %d characters", r.Repository, reference.RepositoryNameTotalLengthMax)}
	}
	if named, err := reference.WithName(r.Repository); err != nil || named.Name() != r.Repository {
		return Route{}, &routeError{codeNameInvalid, fmt.Sprintf("repository name %q is invalid: lowercase letters, digits and separators only", r.Repository)}
	}
	return r, nil
}

func join(segs []string) string { return strings.Join(segs, "/") }

// ReversePathFor maps an upstream /v2/<repository>/... path into the connector's prefixed form,
// for Location and Link headers. ok is false for paths outside /v2/.
func ReversePathFor(ref policies.ConnectorRef, upstreamPath string) (string, bool) {
	rest, ok := strings.CutPrefix(upstreamPath, "/v2/")
	if !ok || rest == "" {
		return "", false
	}
	return "/v2/" + policies.ProxyPath(ref) + "/" + rest, true
}
