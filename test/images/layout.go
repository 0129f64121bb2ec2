package images

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// RefNameAnnotation is how an OCI layout names a manifest: the tag it would have in a registry.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayouts writes each image as an OCI image layout at dir/<name>, replacing what a previous
// run left there: the index tagged tag, and each SBOM tagged as cosign would tag it in a
// registry. `skopeo copy oci:bin/images/manager:<tag> docker://...` copies one out; crane and
// regctl read the folder too.
func WriteLayouts(dir, tag string, imgs []*Image) error {
	for _, img := range imgs {
		path := filepath.Join(dir, img.Name)
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("removing the previous layout %s: %w", path, err)
		}
		l, err := layout.Write(path, empty.Index)
		if err != nil {
			return fmt.Errorf("creating the OCI layout %s: %w", path, err)
		}
		if err := l.AppendIndex(img.Index, layout.WithAnnotations(map[string]string{RefNameAnnotation: tag})); err != nil {
			return fmt.Errorf("writing %s to %s: %w", img.Name, path, err)
		}
		for _, s := range img.SBOMs {
			if err := l.AppendImage(s.Image, layout.WithAnnotations(map[string]string{RefNameAnnotation: SBOMTag(s.Subject)})); err != nil {
				return fmt.Errorf("writing the SBOM of %s to %s: %w", s.Subject, path, err)
			}
		}
	}
	return nil
}
