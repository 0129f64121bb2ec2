// Command images is `make images`: it builds the product's images (test/images) into an OCI
// image layout per image under -out and, given -registry, pushes them with their SBOMs and
// writes a kustomize overlay pinning the pushed digests.
//
//	go run ./test/tools/images -out bin/images [-registry 127.0.0.1:5000/harbor-connector]
//	    [-tag v0.1.0-dev] [-registry-ca ca.crt] [-ca-bundle /etc/ssl/certs/ca-certificates.crt]
//	    [-overlay config/overlays/images]
//
// SOURCE_DATE_EPOCH sets every timestamp in the images (default: the HEAD commit's time).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/images"
)

func main() {
	out := flag.String("out", "bin/images", "where to write the OCI image layouts, one folder per image")
	registry := flag.String("registry", "", "push to this repository prefix (host[:port]/path); empty: build and write the layouts only")
	tag := flag.String("tag", "", "the tag to push and the version label (default "+images.Version+")")
	registryCA := flag.String("registry-ca", "", "a PEM CA certificate to trust for -registry, beside the system roots")
	caBundle := flag.String("ca-bundle", images.DefaultCABundle, "the CA bundle to put in the images")
	overlay := flag.String("overlay", "config/overlays/images", "where a push writes the kustomize overlay (relative to the repository root)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *out, *registry, *tag, *registryCA, *caBundle, *overlay); err != nil {
		fmt.Fprintln(os.Stderr, "make images:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, registry, tag, registryCA, caBundle, overlay string) error {
	root, err := clients.RepoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "harbor-connector-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	start := time.Now()
	o, err := images.DefaultOptions(ctx, images.Options{Root: root, WorkDir: work, Version: tag, CABundle: caBundle,
		Log: func(format string, args ...any) { fmt.Fprintf(os.Stderr, "images: "+format+"\n", args...) }})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "images: revision %s, version %s, SOURCE_DATE_EPOCH=%d (%s)\n", o.Revision, o.Version, o.Epoch.Unix(), o.Epoch.Format(time.RFC3339))
	imgs, err := images.Build(ctx, o)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := images.WriteLayouts(out, o.Version, imgs); err != nil {
		return err
	}
	for _, img := range imgs {
		if err := report(img, filepath.Join(out, img.Name)); err != nil {
			return err
		}
	}
	if registry != "" {
		rt, err := images.Transport(registryCA)
		if err != nil {
			return err
		}
		pushed, err := images.Push(ctx, registry, o.Version, imgs, rt)
		if err != nil {
			return err
		}
		for _, p := range pushed {
			fmt.Printf("pushed %s (tag %s, SBOMs under sha256-<hex>.sbom)\n", p.Digest, o.Version)
		}
		if !filepath.IsAbs(overlay) {
			overlay = filepath.Join(root, overlay)
		}
		if err := images.WriteOverlay(overlay, filepath.Join(root, "config", "default"), pushed); err != nil {
			return err
		}
		fmt.Printf("wrote %s\n", filepath.Join(overlay, "kustomization.yaml"))
	}
	fmt.Fprintf(os.Stderr, "images: done in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// report prints an image's index digest and each platform's compressed size.
func report(img *images.Image, dir string) error {
	d, err := img.Index.Digest()
	if err != nil {
		return err
	}
	im, err := img.Index.IndexManifest()
	if err != nil {
		return err
	}
	fmt.Printf("%-10s %s  %s\n", img.Name, d, dir)
	for _, desc := range im.Manifests {
		pimg, err := img.Index.Image(desc.Digest)
		if err != nil {
			return err
		}
		size, err := compressedSize(pimg)
		if err != nil {
			return err
		}
		fmt.Printf("  %-14s %s  %.1f MiB\n", desc.Platform, desc.Digest, float64(size)/(1<<20))
	}
	return nil
}

func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	return size, nil
}
