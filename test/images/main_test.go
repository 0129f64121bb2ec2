package images_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/images"
)

// The build is the expensive part (six links, and compiles when the build cache is cold), so
// the tests share one, made on first use, and the reproducibility test makes one more.
var (
	scratch   string // removed when the tests end; the shared build's binaries live here
	buildOnce sync.Once
	shared    build
)

type build struct {
	opts   images.Options
	images []*images.Image
	layout string // the images written as OCI layouts
	err    error
}

func TestMain(m *testing.M) {
	var err error
	if scratch, err = os.MkdirTemp("", "images-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(scratch)
	os.Exit(code)
}

// sharedBuild is the build every content test inspects, written to an OCI layout.
func sharedBuild(t *testing.T) build {
	t.Helper()
	buildOnce.Do(func() { shared = newBuild(t, "a") })
	require.NoError(t, shared.err)
	return shared
}

func newBuild(t *testing.T, name string) build {
	root, err := clients.RepoRoot()
	if err != nil {
		return build{err: err}
	}
	b := build{layout: filepath.Join(scratch, name, "layout")}
	work := filepath.Join(scratch, name, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return build{err: err}
	}
	start := time.Now()
	if b.opts, err = images.DefaultOptions(context.Background(), images.Options{Root: root, WorkDir: work}); err != nil {
		return build{err: err}
	}
	if b.images, err = images.Build(context.Background(), b.opts); err != nil {
		return build{err: err}
	}
	if err := images.WriteLayouts(b.layout, b.opts.Version, b.images); err != nil {
		return build{err: err}
	}
	t.Logf("build %s: %s", name, time.Since(start).Round(100*time.Millisecond))
	return b
}

// entry is one tar entry of an image's layers, with its bytes.
type entry struct {
	hdr  *tar.Header
	data []byte
}

// layerEntries reads every layer of img, in order, and the entries of each in their order.
func layerEntries(t *testing.T, img v1.Image) [][]entry {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	var out [][]entry
	for _, l := range layers {
		rc, err := l.Uncompressed()
		require.NoError(t, err)
		tr := tar.NewReader(rc)
		var es []entry
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			data, err := io.ReadAll(tr)
			require.NoError(t, err)
			es = append(es, entry{hdr, data})
		}
		require.NoError(t, rc.Close())
		out = append(out, es)
	}
	return out
}
