// Command helm generates the Helm chart of the install from config/, the one source of truth
// (make chart), and the single-file install (make install-file). It renders a kustomization
// (config/default, or an overlay of it) and config/prometheus with the kustomize Go API, as
// kubectl kustomize does, and turns each object into a template by substituting the fields the
// values set: images, the kubelet root directory and every path below it, the three namespaces
// wherever they are named, priority classes, resources, the node pull listener's objects, and
// the Prometheus Operator objects. With default values the chart renders exactly what kustomize
// renders (the tests here compare them with the real helm, test/tools/helm.sh).
//
// It is its own module, so Helm's and kustomize's dependencies never pin the product's; the root
// module's go build/vet/test ./... skip it. Run it from the repository root:
//
//	go -C test/tools/helm run . -repo "$PWD" -chart bin/chart/harbor-connector
//	go -C test/tools/helm run . -repo "$PWD" -install-file bin/harbor-connector.yaml
//	go -C test/tools/helm run . -repo "$PWD" -adopt-fields-from kubectl   # make helm-adopt (adopt.go)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	var (
		repo, config, prometheus, version, chartDir, installFile, adoptFrom string
	)
	flag.StringVar(&repo, "repo", "../../..", "the repository's root (relative paths below are relative to it)")
	flag.StringVar(&config, "config", "config/default", "the kustomization of the install: config/default or an overlay of it")
	flag.StringVar(&prometheus, "prometheus", "config/prometheus", "the kustomization of the Prometheus Operator objects (metrics.* values)")
	flag.StringVar(&version, "version", "", "the product version, appVersion (default: Version in test/images/names.go)")
	flag.StringVar(&chartDir, "chart", "", "write the chart into this folder (replacing a chart there)")
	flag.StringVar(&installFile, "install-file", "", "write the kustomize render of -config into this file, for kubectl apply --server-side -f")
	flag.StringVar(&adoptFrom, "adopt-fields-from", "", "on the cluster of $KUBECONFIG, hand the fields this field manager applied (kubectl: make deploy) on the install's objects to helm's, before the first helm upgrade over a kustomize install")
	flag.Parse()
	if adoptFrom != "" {
		objs, err := Kustomize(filesys.MakeFsOnDisk(), filepath.Join(repo, config))
		if err == nil {
			err = adoptFieldsFrom(context.Background(), objs, adoptFrom, helmFieldManager)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "test/tools/helm:", err)
			os.Exit(1)
		}
		return
	}
	if chartDir == "" && installFile == "" {
		fmt.Fprintln(os.Stderr, "test/tools/helm: nothing to do: give -chart DIR, -install-file FILE or -adopt-fields-from MANAGER")
		os.Exit(2)
	}
	if err := run(repo, config, prometheus, version, chartDir, installFile); err != nil {
		fmt.Fprintln(os.Stderr, "test/tools/helm:", err)
		os.Exit(1)
	}
}

func run(repo, config, prometheus, version, chartDir, installFile string) error {
	fsys := filesys.MakeFsOnDisk()
	if installFile != "" {
		out, err := KustomizeYAML(fsys, filepath.Join(repo, config))
		if err != nil {
			return err
		}
		header := fmt.Sprintf("# harbor-connector, the kustomize render of %s (make install-file); apply with\n#   kubectl apply --server-side -f %s\n", config, filepath.Base(installFile))
		if err := writeFile(underRepo(repo, installFile), header+string(out)); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s from %s\n", installFile, config)
	}
	if chartDir == "" {
		return nil
	}
	if version == "" {
		v, err := ProductVersion(repo)
		if err != nil {
			return err
		}
		version = v
	}
	chart, err := GenerateFrom(fsys, repo, config, prometheus, version)
	if err != nil {
		return err
	}
	if err := chart.Write(underRepo(repo, chartDir)); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote the chart %s (%s) from %s and %s\n", chartDir, version, config, prometheus)
	return nil
}

func underRepo(repo, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(repo, p)
}

// GenerateFrom renders the install's kustomization and config/prometheus (paths relative to the
// repository's root) and generates the chart.
func GenerateFrom(fsys filesys.FileSystem, repo, config, prometheus, version string) (Chart, error) {
	install, err := Kustomize(fsys, filepath.Join(repo, config))
	if err != nil {
		return nil, err
	}
	prom, err := Kustomize(fsys, filepath.Join(repo, prometheus))
	if err != nil {
		return nil, err
	}
	return Generate(Source{Install: install, Prometheus: prom, Version: version, From: filepath.ToSlash(filepath.Clean(config))})
}

// Write replaces the chart in dir with this one. It removes only a folder that holds a chart of
// the same name (or nothing), never anything else.
func (c Chart) Write(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		old, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
		if err != nil || !strings.Contains(string(old), "\nname: harbor-connector\n") {
			return fmt.Errorf("%s is not empty and holds no harbor-connector chart: not replacing it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := writeFile(filepath.Join(dir, name), c[name]); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
