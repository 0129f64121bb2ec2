package kube

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/alauda/harbor-connector/test/clients"
)

// Version is a test bed version by its name in test/tools/versions.env (K8S_VERSION,
// CONTAINERD_VERSION, RUNC_VERSION, CNI_PLUGINS_VERSION, COREDNS_VERSION,
// TRUST_MANAGER_VERSION): the environment variable of that name when set (make test-matrix sets
// K8S_VERSION), otherwise the file's default. The scripts and the Makefile read the same file, so the version has one default.
func Version(name string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	root, err := clients.RepoRoot()
	if err != nil {
		return "", err
	}
	path := filepath.Join(root, "test", "tools", "versions.env")
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), name+"="); ok {
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no %s in %s", name, path)
}

// K8sVersion is the Kubernetes release the test bed runs (K8S_VERSION).
func K8sVersion() (string, error) { return Version("K8S_VERSION") }

// CacheDir is the project cache the scripts in test/tools build into.
func CacheDir() (string, error) {
	if cache := os.Getenv("HARBOR_CONNECTOR_CACHE"); cache != "" {
		return cache, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "harbor-connector"), nil
}

// NodeRuntimeDir is where test/tools/node-deps.sh puts the real node's runtime: bin/ (containerd,
// ctr, containerd-shim-runc-v2, runc, coredns) and cni/ (the CNI plugins), keyed by their
// versions. HARBOR_CONNECTOR_NODE_RUNTIME overrides it.
func NodeRuntimeDir() (string, error) {
	if dir := os.Getenv("HARBOR_CONNECTOR_NODE_RUNTIME"); dir != "" {
		return dir, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	key := ""
	for _, c := range []struct{ name, env string }{{"containerd", "CONTAINERD_VERSION"}, {"runc", "RUNC_VERSION"}, {"cni", "CNI_PLUGINS_VERSION"}, {"coredns", "COREDNS_VERSION"}} {
		v, err := Version(c.env)
		if err != nil {
			return "", err
		}
		key += "-" + c.name + "-" + v
	}
	return filepath.Join(cache, "node-runtime", strings.TrimPrefix(key, "-")), nil
}
