package images_test

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/alauda/harbor-connector/test/images"
)

// Two builds of the same commit are the same bytes: equal index digests, equal OCI layouts.
// The second build compiles nothing (the build cache has every package) and links again.
func TestBuildIsReproducible(t *testing.T) {
	a := sharedBuild(t)
	b := newBuild(t, "b")
	require.NoError(t, b.err)
	require.Len(t, b.images, len(a.images))
	for i, img := range a.images {
		da, err := img.Index.Digest()
		require.NoError(t, err)
		db, err := b.images[i].Index.Digest()
		require.NoError(t, err)
		assert.Equal(t, da, db, "%s: index digest differs between two builds", img.Name)
		t.Logf("%s %s", img.Name, da)

		ia, err := os.ReadFile(filepath.Join(a.layout, img.Name, "index.json"))
		require.NoError(t, err)
		ib, err := os.ReadFile(filepath.Join(b.layout, img.Name, "index.json"))
		require.NoError(t, err)
		assert.Equal(t, string(ia), string(ib), "%s: the layouts' index.json differ (the SBOMs are tagged by digest there too)", img.Name)
	}
}

// What the layout on disk holds: per image one index of exactly linux/amd64 and linux/arm64,
// each a static binary for its machine on the CA bundle and the accounts, configured to run as
// the image promises, with every timestamp at SOURCE_DATE_EPOCH.
func TestLayoutContent(t *testing.T) {
	b := sharedBuild(t)
	for _, bin := range images.Binaries {
		t.Run(bin.Name, func(t *testing.T) {
			idx, err := layout.ImageIndexFromPath(filepath.Join(b.layout, bin.Name))
			require.NoError(t, err)
			im, err := idx.IndexManifest()
			require.NoError(t, err)
			require.Len(t, im.Manifests, 1+3, "the index and the SBOMs of it and its two platform images")
			assert.Equal(t, types.OCIImageIndex, im.Manifests[0].MediaType)
			assert.Equal(t, b.opts.Version, im.Manifests[0].Annotations[images.RefNameAnnotation])

			index, err := idx.ImageIndex(im.Manifests[0].Digest)
			require.NoError(t, err)
			checkIndex(t, b, bin, index)
		})
	}
}

func checkIndex(t *testing.T, b build, bin images.Binary, index v1.ImageIndex) {
	im, err := index.IndexManifest()
	require.NoError(t, err)
	var platforms []string
	for _, m := range im.Manifests {
		require.NotNil(t, m.Platform)
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	assert.Equal(t, []string{"linux/amd64", "linux/arm64"}, platforms)

	for _, m := range im.Manifests {
		t.Run(m.Platform.String(), func(t *testing.T) {
			assert.Equal(t, types.OCIManifestSchema1, m.MediaType)
			img, err := index.Image(m.Digest)
			require.NoError(t, err)
			cf, err := img.ConfigFile()
			require.NoError(t, err)
			assert.Equal(t, m.Platform.OS, cf.OS)
			assert.Equal(t, m.Platform.Architecture, cf.Architecture)
			assert.Equal(t, m.Platform.Variant, cf.Variant)
			if cf.Architecture == "arm64" {
				assert.Equal(t, "v8", cf.Variant)
			}
			checkConfig(t, b, bin, cf)
			checkFiles(t, b, bin, cf.Architecture, layerEntries(t, img))
		})
	}
}

func checkConfig(t *testing.T, b build, bin images.Binary, cf *v1.ConfigFile) {
	assert.Equal(t, []string{images.BinaryPath(bin.Name)}, cf.Config.Entrypoint)
	if bin.Name == "csi-driver" {
		assert.Empty(t, cf.Config.User, "the CSI driver runs as root: it mounts")
	} else {
		assert.Equal(t, "65532:65532", cf.Config.User)
	}
	assert.Equal(t, images.SourceURL, cf.Config.Labels["org.opencontainers.image.source"])
	assert.Equal(t, b.opts.Revision, cf.Config.Labels["org.opencontainers.image.revision"])
	assert.Regexp(t, `^[0-9a-f]{40}$`, b.opts.Revision)
	assert.Equal(t, images.Version, cf.Config.Labels["org.opencontainers.image.version"])
	assert.True(t, cf.Created.Time.Equal(b.opts.Epoch), "created %s, want %s", cf.Created.Time, b.opts.Epoch)
	require.Len(t, cf.History, 2)
	for _, h := range cf.History {
		assert.True(t, h.Created.Time.Equal(b.opts.Epoch), "history created %s, want %s", h.Created.Time, b.opts.Epoch)
	}
}

var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

func checkFiles(t *testing.T, b build, bin images.Binary, arch string, layers [][]entry) {
	files := map[string][]byte{}
	for _, es := range layers {
		var names []string
		for _, e := range es {
			names = append(names, e.hdr.Name)
			assert.Zero(t, e.hdr.Uid, e.hdr.Name)
			assert.Zero(t, e.hdr.Gid, e.hdr.Name)
			assert.Empty(t, e.hdr.Uname+e.hdr.Gname, e.hdr.Name)
			assert.True(t, e.hdr.ModTime.Equal(b.opts.Epoch), "%s: mtime %s, want %s", e.hdr.Name, e.hdr.ModTime, b.opts.Epoch)
			if e.hdr.Typeflag == '0' {
				files["/"+e.hdr.Name] = e.data
			}
		}
		assert.True(t, sort.StringsAreSorted(names), "entries not sorted: %v", names)
	}

	hostCA, err := os.ReadFile(images.DefaultCABundle)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(hostCA, files["/etc/ssl/certs/ca-certificates.crt"]), "the CA bundle is the build machine's")
	assert.Contains(t, string(files["/etc/passwd"]), "\nnonroot:x:65532:65532:")
	assert.Contains(t, string(files["/etc/group"]), "\nnonroot:x:65532:\n")

	var executables []string
	for path, e := range imageExecutables(bin) {
		executables = append(executables, path)
		exe, ok := files[path]
		if assert.True(t, ok, "no %s in the image", path) {
			checkExecutable(t, path, e.Package, arch, exe)
		}
	}
	for path := range files {
		if strings.HasPrefix(path, "/usr/local/bin/") {
			assert.Contains(t, executables, path, "a binary the image should not carry")
		}
	}
}

// imageExecutables are the binaries an image must carry, by path: its entrypoint and its tools.
func imageExecutables(bin images.Binary) map[string]images.Tool {
	out := map[string]images.Tool{images.BinaryPath(bin.Name): {File: bin.Name, Package: bin.Package}}
	for _, tool := range bin.Tools {
		out[images.BinaryPath(tool.File)] = tool
	}
	return out
}

// checkExecutable checks one binary of an image: static, for arch, built reproducibly from pkg.
func checkExecutable(t *testing.T, path, pkg, arch string, exe []byte) {
	f, err := elf.NewFile(bytes.NewReader(exe))
	require.NoError(t, err)
	assert.Equal(t, elfMachine[arch], f.Machine, path)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "a dynamic loader: not static")
		assert.NotEqual(t, elf.PT_DYNAMIC, p.Type, "a dynamic section: not static")
	}
	assert.Nil(t, f.Section(".dynamic"))
	// -ldflags is not in the build information under -trimpath; its effects are in the file.
	assert.Nil(t, f.Section(".note.go.buildid"), "built with -buildid=")
	assert.Nil(t, f.Section(".symtab"), "built with -s")
	assert.Nil(t, f.Section(".debug_info"), "built with -w")

	bi, err := buildinfo.Read(bytes.NewReader(exe))
	require.NoError(t, err)
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	assert.Equal(t, "0", settings["CGO_ENABLED"])
	assert.Equal(t, "true", settings["-trimpath"])
	assert.Equal(t, arch, settings["GOARCH"])
	assert.True(t, strings.HasSuffix(bi.Path, strings.TrimPrefix(pkg, ".")), "%s is %s", path, bi.Path)
}
