package images

import (
	"context"
	"debug/buildinfo"
	"fmt"
	"runtime/debug"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is one built image: its index (one manifest per platform) and the SBOMs that go beside
// it, keyed by the digest each describes, as cosign tags them (sha256-<hex>.sbom).
type Image struct {
	Name  string
	Index v1.ImageIndex
	SBOMs []Attachment
}

// Attachment is an SBOM image and the digest (index or platform image) it describes.
type Attachment struct {
	Subject v1.Hash
	Image   v1.Image
}

// Build compiles the binaries for every platform and assembles the images, in Binaries order.
// The binaries stay in o.WorkDir: the returned images read them when written or pushed.
func Build(ctx context.Context, o Options) ([]*Image, error) {
	o, err := DefaultOptions(ctx, o)
	if err != nil {
		return nil, err
	}
	base, err := baseLayer(o.CABundle, o.Epoch)
	if err != nil {
		return nil, err
	}
	dirs := make([]string, len(Platforms))
	for i, p := range Platforms {
		o.Log("compiling %d binaries for %s", len(Binaries), p)
		if dirs[i], err = compile(ctx, o.Root, o.WorkDir, p); err != nil {
			return nil, err
		}
	}
	var out []*Image
	for _, b := range Binaries {
		img := &Image{Name: b.Name}
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for i, p := range Platforms {
			files, infos, err := binaryFiles(b, dirs[i], p)
			if err != nil {
				return nil, err
			}
			pimg, err := platformImage(b, p, files, base, o)
			if err != nil {
				return nil, fmt.Errorf("image %s for %s: %w", b.Name, p, err)
			}
			sbom, err := imageSBOM(b.Name, pimg, infos, o)
			if err != nil {
				return nil, fmt.Errorf("SBOM of %s for %s: %w", b.Name, p, err)
			}
			img.SBOMs = append(img.SBOMs, sbom)
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: pimg, Descriptor: v1.Descriptor{Platform: &p}})
		}
		img.Index = idx
		sbom, err := indexSBOM(b.Name, idx, o)
		if err != nil {
			return nil, fmt.Errorf("SBOM of the %s index: %w", b.Name, err)
		}
		// The index's SBOM first, as ko pushes it.
		img.SBOMs = append([]Attachment{sbom}, img.SBOMs...)
		out = append(out, img)
	}
	return out, nil
}

// platformImage is one binary on the shared base layer, with a config that names nothing of
// the build machine: fixed timestamps, the platform, the entrypoint and user, OCI labels.
func platformImage(b Binary, p v1.Platform, files []file, base mutate.Addendum, o Options) (v1.Image, error) {
	binLayer, err := binaryLayer(files, o.Epoch)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.Append(img, base, binLayer); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: o.Epoch}
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath(b.Name)},
		User:       b.User,
		Env:        []string{"PATH=/usr/local/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.source":   SourceURL,
			"org.opencontainers.image.revision": o.Revision,
			"org.opencontainers.image.version":  o.Version,
			"org.opencontainers.image.title":    b.Name,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// binaryFiles are the files of b's binary layer for one platform, from compile's folder dir
// (the entrypoint first, then b's tools), and the build information of each, which the image's
// SBOM is made from.
func binaryFiles(b Binary, dir string, p v1.Platform) ([]file, []*debug.BuildInfo, error) {
	files := []file{{name: BinaryPath(b.Name), mode: 0o755, host: builtPath(dir, b.Package)}}
	for _, t := range b.Tools {
		files = append(files, file{name: BinaryPath(t.File), mode: 0o755, host: builtPath(dir, t.Package)})
	}
	infos := make([]*debug.BuildInfo, len(files))
	for i, f := range files {
		var err error
		if infos[i], err = readBinary(f.host, p); err != nil {
			return nil, nil, err
		}
	}
	return files, infos, nil
}

// readBinary returns the build information embedded in a binary, which its SBOM is made from,
// and refuses a binary that is not what the image promises: built for another platform or
// with cgo.
func readBinary(bin string, p v1.Platform) (*debug.BuildInfo, error) {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("reading the build information of %s: %w", bin, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != p.OS || settings["GOARCH"] != p.Architecture || settings["CGO_ENABLED"] != "0" {
		return nil, fmt.Errorf("%s was built for GOOS=%s GOARCH=%s CGO_ENABLED=%s, want %s/%s without cgo",
			bin, settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"], p.OS, p.Architecture)
	}
	return bi, nil
}
