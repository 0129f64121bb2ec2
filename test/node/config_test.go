package node

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestContainerdConfigKeepsEverythingUnderDir(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644))
	p := newContainerdPaths(dir, "/cache/node-runtime/x")
	p.SandboxImage, p.Snapshotter = PauseImage, "overlayfs"

	config, err := writeContainerdConfig(p, map[string]string{"127.0.0.1:5443": ca})
	require.NoError(t, err)

	data, err := os.ReadFile(config)
	require.NoError(t, err)
	for _, want := range []string{
		`version = 4`,
		`root = "` + dir + `/containerd/root"`,
		`state = "` + dir + `/containerd/state"`,
		`address = "` + dir + `/containerd/containerd.sock"`,
		`address = "` + dir + `/containerd/containerd.sock.ttrpc"`,
		`restrict_oom_score_adj = true`,
		`[plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "localhost/e2e/pause:1"`,
		`snapshotter = "overlayfs"`,
		`Root = "` + dir + `/containerd/runc"`,
		`BinaryName = "/cache/node-runtime/x/bin/runc"`,
		`runtime_path = "/cache/node-runtime/x/bin/containerd-shim-runc-v2"`,
		`config_path = "` + dir + `/containerd/certs.d"`,
		`bin_dirs = ["/cache/node-runtime/x/cni"]`,
	} {
		assert.Contains(t, string(data), want)
	}

	hosts, err := os.ReadFile(filepath.Join(dir, "containerd", "certs.d", "127.0.0.1:5443", "hosts.toml"))
	require.NoError(t, err)
	assert.Equal(t, `server = "https://127.0.0.1:5443"

[host."https://127.0.0.1:5443"]
  capabilities = ["pull", "resolve", "push"]
  ca = "`+dir+`/containerd/certs.d/127.0.0.1:5443/ca.crt"
`, string(hosts))
}

func TestBuildImageLayer(t *testing.T) {
	// BusyboxFiles' layout, from a stand-in file: unit tests do not need busybox-static.
	bin := filepath.Join(t.TempDir(), "busybox")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/true\n"), 0o600))
	files := BusyboxFiles()
	for i := range files {
		files[i].HostPath = bin
	}

	img, err := BuildImage(files, []string{"/bin/sh"}, []string{"A=b"})
	require.NoError(t, err)

	cf, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, "linux", cf.OS)
	assert.Equal(t, "amd64", cf.Architecture)
	assert.Equal(t, []string{"/bin/sh"}, cf.Config.Entrypoint)
	assert.Equal(t, []string{defaultPath, "A=b"}, cf.Config.Env)

	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	var entries []string
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		entry := string(hdr.Typeflag) + " " + hdr.Name
		if hdr.Typeflag == tar.TypeLink {
			entry += " -> " + hdr.Linkname
		}
		// The link carries the target's mode: unpackers chmod the shared inode to it.
		assert.EqualValues(t, 0o755, hdr.Mode, hdr.Name)
		entries = append(entries, entry)
	}
	assert.Equal(t, []string{"5 bin/", "0 bin/busybox", "1 bin/sh -> bin/busybox"}, entries)

	again, err := BuildImage(files, []string{"/bin/sh"}, []string{"A=b"})
	require.NoError(t, err)
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	assert.Equal(t, d1, d2, "the same files give the same image")
}
