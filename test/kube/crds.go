package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// WithCertManagerCRDs installs cert-manager's CRDs (Issuer, Certificate, ...) from the
// cert-manager module the project depends on, so install manifests that create cert-manager
// objects apply. Since cert-manager 1.19 deploy/crds holds the CRDs as controller-gen writes
// them (<group>_<plural>.yaml); before, Helm templates (crd-*.yaml) whose only template text
// sat in comments and in metadata labels. Labels and annotations are dropped either way.
func WithCertManagerCRDs() Option {
	return withCRDs("cert-manager", certManagerCRDs)
}

// WithTrustManagerCRDs installs trust-manager's Bundle CRD (trust.cert-manager.io/v1alpha1) at
// TRUST_MANAGER_VERSION (test/tools/versions.env, the release test/tools/trust-manager.sh
// builds), from the module's deploy/crds, which controller-gen writes (its Helm chart's copy is
// a template). Only the Bundle CRD, as trust-manager's chart installs: v0.25's ClusterBundle has
// no controller in the command.
func WithTrustManagerCRDs() Option {
	return withCRDs("trust-manager", trustManagerCRDs)
}

// withCRDs adds the directory crds returns to the environment's CRDs; what fails to resolve is
// reported on stderr and left to envtest, which then names the missing directory.
func withCRDs(what string, crds func(root string) (string, error)) Option {
	return func(env *envtest.Environment, root string) {
		dir, err := crds(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, what+" CRDs:", err)
			dir = filepath.Join(root, what+"-crds-unavailable")
		}
		env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, dir)
	}
}

func certManagerCRDs(root string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the cert-manager module: %w (run go mod download)", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	files, err := filepath.Glob(filepath.Join(src, "*cert-manager.io_*.yaml"))
	if err == nil && len(files) == 0 {
		files, err = filepath.Glob(filepath.Join(src, "crd-*.yaml"))
	}
	if err != nil || len(files) == 0 {
		return "", fmt.Errorf("no CRDs in %s", src)
	}
	// Keyed by the module version (the directory name ends in @<version>).
	return cleanCRDs("cert-manager-crds", filepath.Base(filepath.Dir(filepath.Dir(src))), files)
}

func trustManagerCRDs(string) (string, error) {
	version, err := Version("TRUST_MANAGER_VERSION")
	if err != nil {
		return "", err
	}
	const module = "github.com/cert-manager/trust-manager"
	// Outside the project's module: the project does not depend on trust-manager.
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("downloading %s@%s from the module proxy: %w", module, version, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no module directory in %q", module, version, out)
	}
	file := filepath.Join(mod.Dir, "deploy", "crds", "trust.cert-manager.io_bundles.yaml")
	return cleanCRDs("trust-manager-crds", version, []string{file})
}

// cleanCRDs writes the CRD files without their labels and annotations into a directory named
// name/key beside the Kubernetes binaries, and returns it.
func cleanCRDs(name, key string, files []string) (string, error) {
	dst := filepath.Join(filepath.Dir(filepath.Dir(assetsDirOrTemp())), name, key)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		var crd map[string]any
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			return "", fmt.Errorf("%s: %w", f, err)
		}
		if md, ok := crd["metadata"].(map[string]any); ok {
			delete(md, "labels")
			delete(md, "annotations")
		}
		clean, err := yaml.Marshal(crd)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), clean, 0o644); err != nil {
			return "", err
		}
	}
	return dst, nil
}

func assetsDirOrTemp() string {
	if dir, err := AssetsDir(); err == nil {
		return dir
	}
	return filepath.Join(os.TempDir(), "harbor-connector", "k8s")
}

// CertManagerKubeconfig applies test/certmanager/rbac.yaml with c (a cluster admin) and writes
// a kubeconfig for the user it authorises, cert-manager, into dir: what test/tools/cert-manager
// runs with, holding those rights and nothing more. It returns the file's path.
func CertManagerKubeconfig(ctx context.Context, env *envtest.Environment, c client.Client, dir string) (string, error) {
	if err := ApplyFiles(ctx, c, "test/certmanager/rbac.yaml"); err != nil {
		return "", err
	}
	user, err := env.AddUser(envtest.User{Name: "cert-manager"}, nil)
	if err != nil {
		return "", err
	}
	b, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "cert-manager.kubeconfig")
	return path, os.WriteFile(path, b, 0o600)
}
