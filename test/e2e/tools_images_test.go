//go:build e2e

package e2e_test

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/node"
)

// The build tools' images: each is the tool's binaries (static where the tool builds that way,
// else with the libraries ldd finds) plus busybox for the Job's shell, pushed to the private
// project so the kubelet pulls them through the connector like any workload image.
type toolImages struct {
	buildkit, ko, buildah, harborAPI string
}

// localBuildkitImage is the buildkit image under a local name, imported into containerd, for
// the seed recipes: their pods carry no annotation, so nothing rewrites a private image for them.
const localBuildkitImage = "e2e.local/buildkit:v1"

// buildToolsDir is where make e2e-tools has test/tools/buildtools.sh put buildkitd, buildctl
// and ko (HARBOR_CONNECTOR_BUILDTOOLS).
func buildToolsDir(t *testing.T) string {
	dir := os.Getenv("HARBOR_CONNECTOR_BUILDTOOLS")
	require.NotEmpty(t, dir, "HARBOR_CONNECTOR_BUILDTOOLS is unset: run the build tool scenarios with make e2e-tools")
	return dir
}

// runcPath is the runc the node runs, which buildkitd's OCI worker needs in its image too.
func runcPath(t *testing.T) string {
	runtime := os.Getenv("HARBOR_CONNECTOR_NODE_RUNTIME")
	require.NotEmpty(t, runtime, "HARBOR_CONNECTOR_NODE_RUNTIME is unset: run with make e2e-tools")
	p := filepath.Join(runtime, "bin", "runc")
	_, err := os.Stat(p)
	require.NoError(t, err, "runc in the node runtime")
	return p
}

func (w *world) pushToolImages(ctx context.Context, t *testing.T) toolImages {
	t.Helper()
	tools := buildToolsDir(t)
	files := func(extra ...node.File) []node.File { return append(node.BusyboxFiles(), extra...) }
	runc, err := node.HostBinaryFiles(ctx, node.File{HostPath: runcPath(t), ImagePath: "/usr/bin/runc"})
	require.NoError(t, err)
	buildkit := files(append(runc,
		node.File{HostPath: filepath.Join(tools, "buildkitd"), ImagePath: "/usr/bin/buildkitd"},
		node.File{HostPath: filepath.Join(tools, "buildctl"), ImagePath: "/usr/bin/buildctl"})...)
	ko := files(node.File{HostPath: filepath.Join(tools, "ko"), ImagePath: "/usr/bin/ko"})
	buildahBin, err := node.HostBinaryFiles(ctx, node.File{HostPath: "/usr/bin/buildah", ImagePath: "/usr/bin/buildah"})
	require.NoError(t, err, "Debian's buildah (make e2e-tools installs it)")
	// containers/image refuses to pull without a signature policy; Debian's accepts anything,
	// as a fresh buildah install does.
	// buildah looks its user up by uid (root here) in /etc/passwd.
	passwd := filepath.Join(w.work, "passwd")
	require.NoError(t, os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644))
	group := filepath.Join(w.work, "group")
	require.NoError(t, os.WriteFile(group, []byte("root:x:0:\n"), 0o644))
	buildah := files(append(buildahBin,
		node.File{HostPath: "/etc/containers/policy.json", ImagePath: "/etc/containers/policy.json"},
		node.File{HostPath: passwd, ImagePath: "/etc/passwd"}, node.File{HostPath: group, ImagePath: "/etc/group"})...)
	client := filepath.Join(w.work, "harbor-api-client")
	require.NoError(t, node.BuildStatic(ctx, "./test/harborapi/cmd/harbor-api-client", client))
	curl, err := node.HostBinaryFiles(ctx, node.File{HostPath: "/usr/bin/curl", ImagePath: "/usr/bin/curl"})
	require.NoError(t, err, "Debian's curl")
	// Debian's curl loads its compiled-in bundle of public roots and fails when it is missing,
	// as it never is in an image with curl; the proxy's CA it finds through SSL_CERT_DIR.
	harborAPI := files(append(curl, node.File{HostPath: client, ImagePath: "/usr/bin/harbor-api-client"},
		node.File{HostPath: "/etc/ssl/certs/ca-certificates.crt", ImagePath: "/etc/ssl/certs/ca-certificates.crt"})...)

	refs := toolImages{
		buildkit:  w.harborHost + "/" + project + "/tools/buildkit:v1",
		ko:        w.harborHost + "/" + project + "/tools/ko:v1",
		buildah:   w.harborHost + "/" + project + "/tools/buildah:v1",
		harborAPI: w.harborHost + "/" + project + "/tools/harbor-api:v1",
	}
	for ref, fs := range map[string][]node.File{refs.buildkit: buildkit, refs.ko: ko, refs.buildah: buildah, refs.harborAPI: harborAPI} {
		img, err := node.BuildImage(fs, []string{"/bin/sh"}, nil)
		require.NoError(t, err, ref)
		require.NoError(t, w.pushToHarbor(ctx, img, ref))
		if ref == refs.buildkit {
			require.NoError(t, w.importUnpulled(ctx, img, localBuildkitImage))
		}
	}
	return refs
}

// fileInImage pulls ref from Harbor directly (the robot's credentials, Harbor's CA: another
// client than the one that pushed) and returns the content of file in its flattened filesystem.
func (w *world) fileInImage(t *testing.T, ref, file string) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	require.NoError(t, err)
	img, err := remote.Image(r, remote.WithAuth(&authn.Basic{Username: w.robot, Password: w.secret}), remote.WithTransport(w.harborTransport()))
	require.NoError(t, err, "pulling %s from Harbor", ref)
	content, err := readFromImage(img, file)
	require.NoError(t, err, "%s in %s", file, ref)
	return content
}

func readFromImage(img v1.Image, file string) (string, error) {
	fs := mutate.Extract(img)
	defer fs.Close()
	tr := tar.NewReader(fs)
	want := strings.TrimPrefix(path.Clean(file), "/")
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("no %s in the image", file)
		}
		if err != nil {
			return "", err
		}
		if strings.TrimPrefix(path.Clean(hdr.Name), "/") == want {
			b, err := io.ReadAll(tr)
			return string(b), err
		}
	}
}
