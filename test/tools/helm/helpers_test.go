package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// repo is the repository's root, from this module's folder.
var repo = func() string {
	p, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		panic(err)
	}
	return p
}()

// helmBin is the real helm CLI, built from the module proxy by test/tools/helm.sh (cached).
func helmBin(t *testing.T) string {
	t.Helper()
	path, err := buildHelm()
	require.NoError(t, err)
	return path
}

var buildHelm = sync.OnceValues(func() (string, error) {
	cmd := exec.Command("bash", filepath.Join(repo, "test", "tools", "helm.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("test/tools/helm.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
})

// helm runs the helm CLI with a private home (no repositories, no plugins) and returns its
// standard output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// defaultChart is the chart generated from the repository's config/default and
// config/prometheus, as make chart generates it, in a folder shared by the tests.
func defaultChart(t *testing.T) string {
	t.Helper()
	dir, err := generateDefaultChart()
	require.NoError(t, err)
	return dir
}

// chartParent is the folder defaultChart writes into, removed by TestMain.
var chartParent string

var generateDefaultChart = sync.OnceValues(func() (string, error) {
	parent, err := os.MkdirTemp("", "harbor-connector-chart-")
	if err != nil {
		return "", err
	}
	chartParent = parent
	dir := filepath.Join(parent, "harbor-connector")
	return dir, writeChart(filesys.MakeFsOnDisk(), repo, dir)
})

func writeChart(fsys filesys.FileSystem, root, dir string) error {
	version, err := ProductVersion(repo)
	if err != nil {
		return err
	}
	chart, err := GenerateFrom(fsys, root, "config/default", "config/prometheus", version)
	if err != nil {
		return err
	}
	return chart.Write(dir)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chartParent != "" {
		_ = os.RemoveAll(chartParent)
	}
	os.Exit(code)
}

// render is `helm template` of a chart with the given flags, as objects.
func render(t *testing.T, chart string, flags ...string) []object {
	t.Helper()
	out, err := helm(t, append([]string{"template", "harbor-connector", chart, "--namespace", "connectors-system"}, flags...)...)
	require.NoError(t, err)
	objs, err := parseYAML(out)
	require.NoError(t, err)
	for i, o := range objs {
		objs[i] = normalise(o)
	}
	return objs
}

// normalise gives an object the types a JSON round trip gives, so renders from kustomize and
// from helm compare by value.
func normalise(v map[string]any) object {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(err)
	}
	return out
}

// kustomizeObjects renders a kustomization with the kustomize Go API, normalised.
func kustomizeObjects(t *testing.T, fsys filesys.FileSystem, dir string) []object {
	t.Helper()
	objs, err := Kustomize(fsys, dir)
	require.NoError(t, err)
	for i, o := range objs {
		objs[i] = normalise(o)
	}
	return objs
}

// key identifies an object in a render: group/kind/namespace/name.
func key(o object) string {
	api, _ := o["apiVersion"].(string)
	group := ""
	if i := strings.LastIndex(api, "/"); i >= 0 {
		group = api[:i]
	}
	return group + "/" + o.kind() + "/" + o.namespace() + "/" + o.name()
}

func byKey(objs []object) map[string]object {
	out := map[string]object{}
	for _, o := range objs {
		out[key(o)] = o
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// diffRenders lists how two renders differ, object by object in kind/namespace/name order: an
// object only in one of them, or the first differing paths of an object in both.
func diffRenders(want, got []object) []string {
	w, g := byKey(want), byKey(got)
	var out []string
	if len(w) != len(want) || len(g) != len(got) {
		out = append(out, fmt.Sprintf("duplicate objects: %d keys for %d objects, %d for %d", len(w), len(want), len(g), len(got)))
	}
	for _, k := range sortedKeys(w) {
		if _, ok := g[k]; !ok {
			out = append(out, "missing "+k)
		}
	}
	for _, k := range sortedKeys(g) {
		wo, ok := w[k]
		if !ok {
			out = append(out, "extra "+k)
			continue
		}
		for _, d := range diffValues("", map[string]any(wo), map[string]any(g[k])) {
			out = append(out, k+": "+d)
		}
	}
	return out
}

// diffValues lists the paths where two values differ.
func diffValues(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		var out []string
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		for _, k := range sortedKeys(keys) {
			wv, wok := w[k]
			gv, gok := g[k]
			switch {
			case !wok:
				out = append(out, fmt.Sprintf("%s.%s: extra %v", path, k, gv))
			case !gok:
				out = append(out, fmt.Sprintf("%s.%s: missing (want %v)", path, k, wv))
			default:
				out = append(out, diffValues(path+"."+k, wv, gv)...)
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		var out []string
		for i := range w {
			out = append(out, diffValues(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	}
	if reflect.DeepEqual(want, got) {
		return nil
	}
	if fmt.Sprint(want) == fmt.Sprint(got) {
		return []string{fmt.Sprintf("%s: want %#v, got %#v", path, want, got)}
	}
	return []string{fmt.Sprintf("%s: want %v, got %v", path, want, got)}
}

// memConfig is an in-memory copy of the repository's config/ folder at /repo/config, to build
// overlays of it (and change it) without touching the work tree.
func memConfig(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	src := filepath.Join(repo, "config")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(repo, path)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, filepath.Join("config", "overlays")) {
			return nil // the user's generated overlays
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/repo", rel), data)
	})
	require.NoError(t, err)
	return mem
}

// writeMem writes files (path relative to /repo: content) into an in-memory tree.
func writeMem(t *testing.T, mem filesys.FileSystem, files map[string]string) {
	t.Helper()
	for p, content := range files {
		require.NoError(t, mem.MkdirAll(filepath.Dir(filepath.Join("/repo", p))))
		require.NoError(t, mem.WriteFile(filepath.Join("/repo", p), []byte(content)))
	}
}

// strs lists every string below v with its path.
func strs(path string, v any, fn func(path, s string)) {
	switch x := v.(type) {
	case object:
		strs(path, map[string]any(x), fn)
	case map[string]any:
		for _, k := range sortedKeys(x) {
			strs(path+"."+k, x[k], fn)
		}
	case []any:
		for i, c := range x {
			strs(fmt.Sprintf("%s[%d]", path, i), c, fn)
		}
	case string:
		fn(path, x)
	}
}

// get follows a path of map keys and list indexes (ints) in an object.
func get(o object, path ...any) any {
	var v any = map[string]any(o)
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[p]
		case int:
			l, _ := v.([]any)
			if p >= len(l) {
				return nil
			}
			v = l[p]
		}
	}
	return v
}

// container is the first container of a workload in a render.
func container(t *testing.T, objs map[string]object, k string) map[string]any {
	t.Helper()
	o, ok := objs[k]
	require.True(t, ok, "%s in the render", k)
	c, ok := get(o, "spec", "template", "spec", "containers", 0).(map[string]any)
	require.True(t, ok, "%s has a container", k)
	return c
}

// args are a container's arguments.
func args(c map[string]any) []string {
	var out []string
	for _, a := range c["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

// flagValue is the value of --flag=value in args.
func flagValue(args []string, flag string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}
