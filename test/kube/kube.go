// Package kube starts the real Kubernetes API server (envtest, with the binaries
// test/tools/k8s-assets.sh builds from the Go module proxy) with the project's CRDs installed.
// Start one per test package, in TestMain.
package kube

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/test/clients"
)

// Scheme knows the built-in types, the Connector API and cert-manager's (the install creates
// its Issuers and Certificates).
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, cmapi.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// AssetsDir is KUBEBUILDER_ASSETS when set, otherwise the cache directory the asset script
// builds K8sVersion into. It fails with the command to run when kube-apiserver is missing.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		cache, err := CacheDir()
		if err != nil {
			return "", err
		}
		version, err := K8sVersion()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(cache, "k8s", version)
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("no kube-apiserver in %s: run test/tools/k8s-assets.sh (or make envtest-assets)", dir)
	}
	return dir, nil
}

// Option adjusts the environment before it starts.
type Option func(env *envtest.Environment, root string)

// WithWebhooks installs the webhook configurations in the given files (relative to the
// repository root), pointed at a local server with a CA envtest makes, as cert-manager's
// cainjector would. The server's address and certificates are in env.WebhookInstallOptions.
func WithWebhooks(paths ...string) Option {
	return func(env *envtest.Environment, root string) {
		for _, p := range paths {
			env.WebhookInstallOptions.Paths = append(env.WebhookInstallOptions.Paths, filepath.Join(root, p))
		}
	}
}

// WithAPIServerArgs overrides kube-apiserver flags: each key is a flag name without the leading
// dashes, set to the given values (replacing envtest's default for that flag). A key with a nil
// value is not passed at all, which is how envtest's default
// `--disable-admission-plugins=ServiceAccount` is dropped for a real node.
func WithAPIServerArgs(args map[string][]string) Option {
	return func(env *envtest.Environment, _ string) {
		flags := env.ControlPlane.GetAPIServer().Configure()
		for name, values := range args {
			if values == nil {
				flags.Disable(name)
				continue
			}
			flags.Set(name, values...)
		}
	}
}

// Start starts an API server with the CRDs from config/crd/bases installed.
func Start(opts ...Option) (*envtest.Environment, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	root, err := clients.RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
	}
	for _, opt := range opts {
		opt(env, root)
	}
	if _, err := env.Start(); err != nil {
		// envtest leaves etcd and the API server running when a later step of Start fails
		// (installing CRDs or webhooks): stop them, or they outlive the test binary.
		_ = env.Stop()
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	return env, nil
}
