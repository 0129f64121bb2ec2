//go:build e2e

package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/alauda/harbor-connector/test/node"
)

// craneModule is the crane test/tools/clients.sh pins, built static for the test image.
const craneModule = "github.com/google/go-containerregistry/cmd/crane@v0.20.6"

// buildCrane builds a static crane (it goes into an image with no libc).
func buildCrane(ctx context.Context, work string) (string, error) {
	bin := filepath.Join(work, "bin")
	cmd := exec.CommandContext(ctx, "go", "install", craneModule)
	cmd.Dir, cmd.Env = work, append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+bin, "GOFLAGS=-trimpath")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building a static crane: %v\n%s", err, out)
	}
	return filepath.Join(bin, "crane"), nil
}

// Test images: busybox for a shell, plus crane where a job pushes or pulls. Pushed to the
// private Harbor project (so workloads pull them through the connector), and the crane image
// also imported under a local name for pods that are not injected (namespace B's attempts).
const localCraneImage = "e2e.local/crane:v1"

func (w *world) appImage() string   { return w.harborHost + "/" + project + "/app:v1" }
func (w *world) craneImage() string { return w.harborHost + "/" + project + "/crane:v1" }

func (w *world) pushImages(ctx context.Context, craneBin string) error {
	app, err := node.BuildImage(node.BusyboxFiles(), []string{"/bin/sh"}, nil)
	if err != nil {
		return err
	}
	craneFiles := append(node.BusyboxFiles(), node.File{HostPath: craneBin, ImagePath: "/bin/crane", Mode: 0o755})
	crane, err := node.BuildImage(craneFiles, []string{"/bin/sh"}, nil)
	if err != nil {
		return err
	}
	for ref, img := range map[string]v1.Image{w.appImage(): app, w.craneImage(): crane} {
		if err := w.pushToHarbor(ctx, img, ref); err != nil {
			return err
		}
	}
	return w.importUnpulled(ctx, crane, localCraneImage)
}

// importUnpulled imports img into containerd as ref, for pods the webhook leaves alone. The
// local copy must not share the pushed image's ID. From 1.35 the kubelet checks an image already
// on the node against its pull records (KEP-2535, KubeletEnsureSecretPulledImages): once a pod
// pulled the image as 127.0.0.1:5050/..., that ID has a record naming only that name, so a
// PullNever pod of the same ID under the local name would be refused as "not present". A label
// makes it a different image that the kubelet never pulled, which counts as preloaded
// (NeverVerifyPreloadedImages, the default policy).
func (w *world) importUnpulled(ctx context.Context, img v1.Image, ref string) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	localConfig := *cfg.Config.DeepCopy()
	localConfig.Labels = map[string]string{"e2e.local/imported": "true"}
	local, err := mutate.Config(img, localConfig)
	if err != nil {
		return err
	}
	tarball := filepath.Join(w.work, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	if err := node.WriteTarball(local, ref, tarball); err != nil {
		return err
	}
	return w.node.ImportImage(ctx, tarball)
}

// pushToHarbor pushes an image to the test Harbor with the robot's credentials over TLS,
// trusting the Harbor's CA only.
func (w *world) pushToHarbor(ctx context.Context, img v1.Image, ref string) error {
	return node.Push(ctx, img, ref, remote.WithAuth(&authn.Basic{Username: w.robot, Password: w.secret}), remote.WithTransport(w.harborTransport()))
}

// harborTransport reaches the test Harbor directly over TLS, trusting its CA only.
func (w *world) harborTransport() http.RoundTripper {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.harbor.CACertPEM())
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: pool}
	return transport
}
