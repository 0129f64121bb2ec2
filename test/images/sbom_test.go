package images_test

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"io"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/images"
)

// What the test reads of an SPDX document: its own decoding, not the builder's types.
type spdx struct {
	SPDXVersion       string `json:"spdxVersion"`
	DocumentNamespace string `json:"documentNamespace"`
	DocumentDescribes []string
	CreationInfo      struct {
		Created string `json:"created"`
	} `json:"creationInfo"`
	Packages []struct {
		SPDXID       string `json:"SPDXID"`
		Name         string `json:"name"`
		VersionInfo  string `json:"versionInfo"`
		Checksums    []struct{ Algorithm, ChecksumValue string }
		ExternalRefs []struct{ ReferenceType, ReferenceLocator string }
	} `json:"packages"`
	Relationships []struct{ SpdxElementID, RelationshipType, RelatedSpdxElement string } `json:"relationships"`
}

// Every image has SBOMs as ko attaches them: one for the index and one per platform image, each
// an image of one text/spdx+json layer tagged sha256-<hex>.sbom after the digest it describes.
// A platform image's lists every module its binary links, from the binary's build information.
func TestSBOMs(t *testing.T) {
	b := sharedBuild(t)
	for _, img := range b.images {
		t.Run(img.Name, func(t *testing.T) {
			indexDigest, err := img.Index.Digest()
			require.NoError(t, err)
			im, err := img.Index.IndexManifest()
			require.NoError(t, err)
			want := []v1.Hash{indexDigest}
			for _, m := range im.Manifests {
				want = append(want, m.Digest)
			}
			var subjects []v1.Hash
			for _, s := range img.SBOMs {
				subjects = append(subjects, s.Subject)
			}
			require.Equal(t, want, subjects, "an SBOM for the index, then one per platform image")

			tags := layoutTags(t, filepath.Join(b.layout, img.Name))
			for _, s := range img.SBOMs {
				assert.Contains(t, tags, "sha256-"+s.Subject.Hex+".sbom")
				doc := readSPDX(t, b, s)
				if s.Subject == indexDigest {
					checkIndexSBOM(t, doc, im)
					continue
				}
				pimg, err := img.Index.Image(s.Subject)
				require.NoError(t, err)
				checkImageSBOM(t, doc, pimg, binaryNamed(t, img.Name))
			}
		})
	}
}

func layoutTags(t *testing.T, dir string) []string {
	idx, err := layout.ImageIndexFromPath(dir)
	require.NoError(t, err)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	var tags []string
	for _, m := range im.Manifests {
		tags = append(tags, m.Annotations[images.RefNameAnnotation])
	}
	return tags
}

func readSPDX(t *testing.T, b build, s images.Attachment) spdx {
	m, err := s.Image.Manifest()
	require.NoError(t, err)
	require.Len(t, m.Layers, 1)
	assert.EqualValues(t, "text/spdx+json", m.Layers[0].MediaType)
	cf, err := s.Image.ConfigFile()
	require.NoError(t, err)
	assert.True(t, cf.Created.Time.Equal(b.opts.Epoch))
	layers, err := s.Image.Layers()
	require.NoError(t, err)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	raw, err := io.ReadAll(rc)
	require.NoError(t, err)
	var doc spdx
	require.NoError(t, json.Unmarshal(raw, &doc))
	assert.Equal(t, "SPDX-2.3", doc.SPDXVersion)
	assert.Equal(t, b.opts.Epoch.Format("2006-01-02T15:04:05Z"), doc.CreationInfo.Created)
	assert.True(t, strings.HasSuffix(doc.DocumentNamespace, s.Subject.String()), "namespace %s from the digest", doc.DocumentNamespace)
	return doc
}

func checkIndexSBOM(t *testing.T, doc spdx, im *v1.IndexManifest) {
	variants := map[string]bool{}
	for _, r := range doc.Relationships {
		if r.RelationshipType == "VARIANT_OF" {
			variants[r.RelatedSpdxElement] = true
		}
	}
	for _, m := range im.Manifests {
		assert.True(t, variants["SPDXRef-Package-sha256-"+m.Digest.Hex], "the index SBOM lists %s", m.Platform)
	}
}

func binaryNamed(t *testing.T, name string) images.Binary {
	for _, b := range images.Binaries {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no binary %s", name)
	return images.Binary{}
}

// checkImageSBOM checks that the SBOM lists every module each binary of the image links: the
// entrypoint's and its tools'.
func checkImageSBOM(t *testing.T, doc spdx, img v1.Image, bin images.Binary) {
	exes := imageExecutables(bin)
	for _, es := range layerEntries(t, img) {
		for _, e := range es {
			if _, ok := exes["/"+e.hdr.Name]; ok {
				bi, err := buildinfo.Read(bytes.NewReader(e.data))
				require.NoError(t, err)
				checkLinkedModules(t, doc, bi)
				delete(exes, "/"+e.hdr.Name)
			}
		}
	}
	assert.Empty(t, exes, "binaries missing from the image")
}

func checkLinkedModules(t *testing.T, doc spdx, bi *debug.BuildInfo) {
	require.NotEmpty(t, bi.Deps)
	purls := map[string]string{} // name -> purl
	sums := map[string]string{}  // name -> SHA256 checksum
	for _, p := range doc.Packages {
		for _, r := range p.ExternalRefs {
			if r.ReferenceType == "purl" {
				purls[p.Name] = r.ReferenceLocator
			}
		}
		for _, c := range p.Checksums {
			sums[p.Name] = c.ChecksumValue
		}
	}
	assert.Equal(t, "pkg:golang/stdlib@"+strings.TrimPrefix(bi.GoVersion, "go"), purls["stdlib"])
	assert.Contains(t, purls[bi.Main.Path], "pkg:golang/"+bi.Main.Path+"@")
	for _, dep := range bi.Deps {
		m := dep
		if dep.Replace != nil {
			m = dep.Replace
		}
		purl, ok := purls[m.Path]
		if !assert.True(t, ok, "the SBOM lists %s", m.Path) {
			continue
		}
		version, found := strings.CutPrefix(purl, "pkg:golang/"+m.Path+"@")
		require.True(t, found, purl)
		version, err := url.PathUnescape(version)
		require.NoError(t, err)
		assert.Equal(t, m.Version, version, purl)
		assert.Len(t, sums[m.Path], 64, "%s has the SHA-256 of its go.sum hash", m.Path)
	}
}
