package images

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime/debug"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The SBOMs follow ko (internal/sbom/spdx.go) and cosign: each platform image gets an SPDX
// document made from its binaries' embedded build information (what `go version -m` prints),
// the index gets one listing its platform images, and each is an image of one layer of media
// type text/spdx+json, tagged sha256-<hex of the described digest>.sbom in the same repository
// (cosign's attachment tag, which `cosign download sbom` reads).

// SPDXMediaType is the layer media type cosign and ko give an SPDX JSON SBOM.
const SPDXMediaType types.MediaType = "text/spdx+json"

// SBOMTag is the tag cosign and ko give the SBOM of the image or index with digest d.
func SBOMTag(d v1.Hash) string { return d.Algorithm + "-" + d.Hex + ".sbom" }

// The subset of SPDX 2.3 (https://spdx.github.io/spdx-spec/v2.3/) the documents use. Field
// order is the JSON order, so equal inputs encode to equal bytes.
type spdxDocument struct {
	SPDXID            string             `json:"SPDXID"`
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	DocumentDescribes []string           `json:"documentDescribes"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID           string            `json:"SPDXID"`
	Name             string            `json:"name"`
	VersionInfo      string            `json:"versionInfo,omitempty"`
	DownloadLocation string            `json:"downloadLocation"`
	FilesAnalyzed    bool              `json:"filesAnalyzed"`
	LicenseConcluded string            `json:"licenseConcluded"`
	LicenseDeclared  string            `json:"licenseDeclared"`
	CopyrightText    string            `json:"copyrightText"`
	PrimaryPurpose   string            `json:"primaryPackagePurpose,omitempty"`
	Checksums        []spdxChecksum    `json:"checksums,omitempty"`
	ExternalRefs     []spdxExternalRef `json:"externalRefs,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

const noAssertion = "NOASSERTION"

// imageSBOM describes a platform image: the image contains the main module, which depends on
// the Go standard library and on every module linked into its binaries (infos: the entrypoint's
// first, then its tools', all built from the same main module by the same toolchain).
func imageSBOM(name string, img v1.Image, infos []*debug.BuildInfo, o Options) (Attachment, error) {
	bi := infos[0]
	d, err := img.Digest()
	if err != nil {
		return Attachment{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Attachment{}, err
	}
	doc, imageID := newDocument(name, d, cf.Platform(), o)

	// The main module's version is "(devel)" unless the build stamped one from VCS; the commit
	// the images are labelled with identifies the source instead.
	mainVersion := bi.Main.Version
	if mainVersion == "" || mainVersion == "(devel)" {
		mainVersion = o.Revision
	}
	mainID := goPackageID(bi.Main.Path, mainVersion)
	mainPkg := goPackage(mainID, bi.Main.Path, mainVersion, "", "https://"+bi.Main.Path)
	mainPkg.PrimaryPurpose = "APPLICATION"
	doc.Packages = append(doc.Packages, mainPkg)
	doc.Relationships = append(doc.Relationships, spdxRelationship{imageID, "CONTAINS", mainID})

	goVersion := strings.TrimPrefix(bi.GoVersion, "go")
	stdID := goPackageID("stdlib", goVersion)
	doc.Packages = append(doc.Packages, goPackage(stdID, "stdlib", goVersion, "", "https://go.dev/dl/"))
	doc.Relationships = append(doc.Relationships, spdxRelationship{mainID, "DEPENDS_ON", stdID})

	for _, m := range linkedModules(infos) {
		id := goPackageID(m.Path, m.Version)
		location := noAssertion
		if m.Version != "" {
			location = "https://proxy.golang.org/" + m.Path + "/@v/" + m.Version + ".zip"
		}
		doc.Packages = append(doc.Packages, goPackage(id, m.Path, m.Version, m.Sum, location))
		doc.Relationships = append(doc.Relationships, spdxRelationship{mainID, "DEPENDS_ON", id})
	}
	return attachment(d, doc, o)
}

// indexSBOM describes an index: each platform image is a variant of it (ko's relationship).
func indexSBOM(name string, idx v1.ImageIndex, o Options) (Attachment, error) {
	d, err := idx.Digest()
	if err != nil {
		return Attachment{}, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return Attachment{}, err
	}
	doc, indexID := newDocument(name, d, nil, o)
	for _, m := range im.Manifests {
		id := ociPackageID(m.Digest)
		doc.Packages = append(doc.Packages, ociPackage(id, name, m.Digest, m.Platform))
		doc.Relationships = append(doc.Relationships, spdxRelationship{indexID, "VARIANT_OF", id})
	}
	return attachment(d, doc, o)
}

// newDocument starts a document about the image or index (p nil) name with digest d, and
// returns it and the SPDX ID of that image or index. Its namespace is derived from d and its
// creation time is the epoch, so rebuilding the same image gives the same document.
func newDocument(name string, d v1.Hash, p *v1.Platform, o Options) (spdxDocument, string) {
	id := ociPackageID(d)
	return spdxDocument{
		SPDXID:            "SPDXRef-DOCUMENT",
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		Name:              "sbom-" + d.String(),
		DocumentNamespace: SourceURL + "/spdx/" + d.String(),
		CreationInfo: spdxCreationInfo{
			Created:  o.Epoch.Format("2006-01-02T15:04:05Z"),
			Creators: []string{"Tool: harbor-connector-make-images-" + o.Version},
		},
		DocumentDescribes: []string{id},
		Packages:          []spdxPackage{ociPackage(id, name, d, p)},
		Relationships:     []spdxRelationship{{"SPDXRef-DOCUMENT", "DESCRIBES", id}},
	}, id
}

// attachment encodes doc and wraps it in the image cosign calls a file: an OCI manifest with
// one uncompressed layer of the document.
func attachment(subject v1.Hash, doc spdxDocument, o Options) (Attachment, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return Attachment{}, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(img, mutate.Addendum{
		Layer:   static.NewLayer(buf.Bytes(), SPDXMediaType),
		History: v1.History{Created: v1.Time{Time: o.Epoch}, CreatedBy: "make images: SPDX SBOM"},
	})
	if err != nil {
		return Attachment{}, err
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: o.Epoch})
	if err != nil {
		return Attachment{}, err
	}
	return Attachment{Subject: subject, Image: img}, nil
}

// dependency is the module that was linked: the replacement when go.mod replaces one.
// linkedModules are the modules the binaries link, each once (after replacement), sorted by
// path as the go command lists one binary's.
func linkedModules(infos []*debug.BuildInfo) []debug.Module {
	seen := map[string]bool{}
	var out []debug.Module
	for _, bi := range infos {
		for _, dep := range bi.Deps {
			if m := dependency(dep); !seen[m.Path] {
				seen[m.Path] = true
				out = append(out, m)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func dependency(dep *debug.Module) debug.Module {
	if dep.Replace != nil {
		return *dep.Replace
	}
	return *dep
}

func ociPackageID(d v1.Hash) string { return "SPDXRef-Package-" + d.Algorithm + "-" + d.Hex }

// ociPackage is an image or index called name; p is nil for an index. Its purl has no
// repository_url: the same digest may be pushed to any registry.
func ociPackage(id, name string, d v1.Hash, p *v1.Platform) spdxPackage {
	q := url.Values{}
	version := ""
	if p != nil {
		q.Set("os", p.OS)
		q.Set("arch", p.Architecture)
		if p.Variant != "" {
			q.Set("variant", p.Variant)
		}
		version = p.String()
	}
	purl := "pkg:oci/" + purlEscape(name) + "@" + purlEscape(d.String())
	if len(q) > 0 {
		purl += "?" + q.Encode() // sorted by key, as purl wants
	}
	return spdxPackage{
		SPDXID: id, Name: d.String(), VersionInfo: version,
		DownloadLocation: noAssertion, LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
		PrimaryPurpose: "CONTAINER",
		Checksums:      []spdxChecksum{{strings.ToUpper(d.Algorithm), d.Hex}},
		ExternalRefs:   []spdxExternalRef{{"PACKAGE-MANAGER", "purl", purl}},
	}
}

// goPackageID is an SPDX identifier for a module: letters, digits, '.' and '-' only.
func goPackageID(modPath, version string) string {
	id := "SPDXRef-Package-go-" + modPath
	if version != "" {
		id += "-" + version
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '.'
	}, id)
}

// goPackage is a Go module, or the standard library, with its pkg:golang purl. sum is the
// go.sum "h1:" hash, recorded as SHA256 as ko does: it is the SHA-256 of the module's file
// hashes (golang.org/x/mod/sumdb/dirhash), not of the zip.
func goPackage(id, modPath, version, sum, location string) spdxPackage {
	var segs []string
	for _, s := range strings.Split(modPath, "/") {
		segs = append(segs, purlEscape(s))
	}
	purl := "pkg:golang/" + strings.Join(segs, "/")
	if version != "" {
		purl += "@" + purlEscape(version)
	}
	p := spdxPackage{
		SPDXID: id, Name: modPath, VersionInfo: version,
		DownloadLocation: location, LicenseConcluded: noAssertion, LicenseDeclared: noAssertion, CopyrightText: noAssertion,
		PrimaryPurpose: "LIBRARY",
		ExternalRefs:   []spdxExternalRef{{"PACKAGE-MANAGER", "purl", purl}},
	}
	if h, ok := strings.CutPrefix(sum, "h1:"); ok {
		if raw, err := base64.StdEncoding.DecodeString(h); err == nil {
			p.Checksums = []spdxChecksum{{"SHA256", hex.EncodeToString(raw)}}
		}
	}
	return p
}

// purlEscape percent-encodes everything but the characters purl leaves bare in a segment or
// version (so "+incompatible" becomes "%2Bincompatible" and "sha256:" "sha256%3A").
func purlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte(".-_~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
