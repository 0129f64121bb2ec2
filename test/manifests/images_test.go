package manifests_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/images"
)

// The install names exactly the images `make images` builds, under the project's own registry
// path (test/images.CommittedImage), so the overlay `make images REGISTRY=...` writes replaces
// every one of them, and no workload runs an image the project does not publish.
func TestInstallNamesTheBuiltImages(t *testing.T) {
	want := map[string][]string{
		"Deployment/connectors-manager": {images.CommittedImage("manager")},
		"Deployment/connectors-proxy":   {images.CommittedImage("proxy")},
		"DaemonSet/connectors-node":     {images.CommittedImage("proxy")},
		"DaemonSet/connectors-csi":      {images.CommittedImage("csi-driver")},
	}
	got := map[string][]string{}
	for _, w := range renderedWorkloads(t) {
		key := w.kind + "/" + w.name
		spec := w.template.Spec
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			got[key] = append(got[key], c.Image)
		}
	}
	assert.Equal(t, want, got)

	var names []string
	for _, b := range images.Binaries {
		names = append(names, b.Name)
	}
	require.Equal(t, []string{"manager", "proxy", "csi-driver"}, names, "the images make images builds")
	assert.Equal(t, "ghcr.io/alauda/harbor-connector/proxy:v0.1.0-dev", images.CommittedImage("proxy"))
}
