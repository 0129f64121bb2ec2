package node

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/alauda/harbor-connector/test/clients"
)

// File is a host file to put in an image.
type File struct {
	HostPath  string
	ImagePath string // absolute path in the image
	Mode      int64  // permission bits; 0 keeps the host file's
}

// BusyboxFiles is a shell for test containers: Debian's static /bin/busybox (package
// busybox-static), as /bin/busybox and /bin/sh, which is all `sh -c` needs (busybox picks the
// applet from argv[0]).
func BusyboxFiles() []File {
	return []File{
		{HostPath: "/bin/busybox", ImagePath: "/bin/busybox", Mode: 0o755},
		{HostPath: "/bin/busybox", ImagePath: "/bin/sh", Mode: 0o755},
	}
}

// BuildImage builds a linux/amd64 image from nothing but the given files (static binaries:
// there is no libc in it), as one layer. A host file listed twice is stored once, the second
// entry as a hard link. Timestamps are fixed, so the same files give the same digest. env gets
// the usual PATH unless it sets one: runc resolves a command such as "sh" only through the
// image's PATH, and containerd adds none.
func BuildImage(files []File, entrypoint []string, env []string) (v1.Image, error) {
	layerTar, err := tarFiles(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint = entrypoint
	cf.Config.Env = withDefaultPath(env)
	return mutate.ConfigFile(img, cf)
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func withDefaultPath(env []string) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return env
		}
	}
	return append([]string{defaultPath}, env...)
}

func tarFiles(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	written := map[string]*tar.Header{} // by host path, for hard links
	for _, f := range files {
		if !path.IsAbs(f.ImagePath) {
			return nil, fmt.Errorf("image path %q is not absolute", f.ImagePath)
		}
		name := strings.TrimPrefix(path.Clean(f.ImagePath), "/")
		// Parent directories first, top down, each once.
		var parents []string
		for dir := path.Dir(name); dir != "." && !dirs[dir]; dir = path.Dir(dir) {
			parents = append([]string{dir}, parents...)
		}
		for _, dir := range parents {
			dirs[dir] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch}); err != nil {
				return nil, err
			}
		}
		if target, ok := written[f.HostPath]; ok {
			// With the target's mode: unpackers chmod the link's path to the header's mode,
			// which is the target's inode too.
			link := &tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target.Name, Mode: target.Mode, ModTime: epoch}
			if err := tw.WriteHeader(link); err != nil {
				return nil, err
			}
			continue
		}
		data, err := os.ReadFile(f.HostPath)
		if err != nil {
			return nil, fmt.Errorf("reading %s for the image: %w", f.HostPath, err)
		}
		mode := f.Mode
		if mode == 0 {
			st, err := os.Stat(f.HostPath)
			if err != nil {
				return nil, err
			}
			mode = int64(st.Mode().Perm())
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
		written[f.HostPath] = hdr
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTarball writes img as a docker-archive tarball tagged ref, which
// `ctr images import` (Node.ImportImage) stores under that name.
func WriteTarball(img v1.Image, ref, path string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	return tarball.WriteToFile(path, tag, img)
}

// Push pushes img to a registry as ref (the suite's test Harbor, for example). opts carry the
// credentials and transport (remote.WithAuth, remote.WithTransport for a private CA).
func Push(ctx context.Context, img v1.Image, ref string, opts ...remote.Option) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := remote.Write(r, img, append(opts, remote.WithContext(ctx))...); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// BuildStatic builds a Go package of this repository (a path relative to the repository root,
// such as ./test/node/pause) into a static linux/amd64 binary at out, for images with no libc.
func BuildStatic(ctx context.Context, pkg, out string) error {
	root, err := clients.RepoRoot()
	if err != nil {
		return err
	}
	_, err = runIn(ctx, root, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"},
		"go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	return err
}
