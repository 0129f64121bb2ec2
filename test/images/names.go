// Package images builds the product's OCI images (`make images`) from source, offline, with
// go-containerregistry: static binaries for linux/amd64 and linux/arm64 on an empty base, one
// index per image, reproducible to the byte for a given commit and toolchain, each with an SPDX
// SBOM attached the way ko and cosign do. It writes an OCI image layout and, given a registry,
// pushes there and writes a kustomize overlay that pins the pushed digests.
package images

import v1 "github.com/google/go-containerregistry/pkg/v1"

// The names the committed manifests (config/) use. The project owns ghcr.io/alauda; the
// former `harbor-connector/<name>:dev` resolved to a Docker Hub namespace it does not own.
// test/manifests asserts that config/ names exactly CommittedImage of each binary.
const (
	Repository = "ghcr.io/alauda/harbor-connector"
	Version    = "v0.1.0-dev"
	// SourceURL is the org.opencontainers.image.source label.
	SourceURL = "https://github.com/alauda/harbor-connector"
)

// nonroot is the user the unprivileged images run as: the UID/GID distroless calls nonroot,
// which /etc/passwd in every image names (layers.go).
const nonroot = "65532:65532"

// Binary is one shipped command and the image it becomes.
type Binary struct {
	Name    string // image name under the repository, and the binary's file name
	Package string // Go package, relative to the repository root
	User    string // the image's config User; empty means root
	Tools   []Tool // further binaries in the same layer, not run by the image
}

// Tool is a binary an image carries for something other than its containers to copy out.
type Tool struct {
	File    string // file name under /usr/local/bin
	Package string // Go package, relative to the repository root
}

// Binaries are the three shipped commands. The proxy image also runs the node listener
// (config/proxy/node.yaml), so there is no fourth image.
var Binaries = []Binary{
	{Name: "manager", Package: "./cmd/manager", User: nonroot},
	// The kubelet's credential provider rides in the image every node already pulls for the node
	// listener; node bootstrap copies it out (README "Per-pod pulls"). Its file name is the
	// provider name the kubelet's config gives.
	{Name: "proxy", Package: "./cmd/proxy", User: nonroot, Tools: []Tool{
		{File: "connectors-credential-provider", Package: "./cmd/credential-provider"},
	}},
	// The CSI driver runs as root: it mounts volumes into pods' directories on the node (its
	// DaemonSet is privileged with runAsUser 0), so the image leaves User empty.
	{Name: "csi-driver", Package: "./cmd/csi-driver"},
}

// Platforms are the platforms of every index, in index order. arm64 carries variant v8, as the
// OCI image-index spec lists it and as containerd normalises it; the builder sets GOARM64=v8.0
// and GOAMD64=v1 so that the binaries run on every CPU these platforms name.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
}

// BinaryPath is where each image holds its binary, and its entrypoint.
func BinaryPath(name string) string { return "/usr/local/bin/" + name }

// CommittedImage is the reference config/ uses for an image.
func CommittedImage(name string) string { return Repository + "/" + name + ":" + Version }

// CommittedName is CommittedImage without the tag: what a kustomize `images:` entry matches.
func CommittedName(name string) string { return Repository + "/" + name }
