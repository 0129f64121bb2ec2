package manifests_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const defaultKubeletRoot = "/var/lib/kubelet"

// The kubelet's root directory is one setting (config/default/kubelet-root.yaml): with it
// changed, in the file or from an overlay as README shows, no other path of the install still
// names /var/lib/kubelet, and every path of the CSI driver under the kubelet's directory starts
// with the new root. The setting itself is not installed.
func TestInstallKubeletRootIsOneSetting(t *testing.T) {
	def := render(t, filepath.Join(root, "config", "default"))
	assert.Nil(t, findRendered(def, "ConfigMap", productNS, "connectors-kubelet-root"), "a build-time input, not installed")
	assertKubeletPaths(t, renderedCSI(t, def), defaultKubeletRoot)

	renders := map[string]func(t *testing.T, kubeletRoot string) string{
		"the file edited":     editedKubeletRoot,
		"set from an overlay": overlayKubeletRoot,
	}
	for how, dir := range renders {
		for _, kubeletRoot := range []string{"/var/lib/k0s/kubelet", "/var/snap/microk8s/common/var/lib/kubelet"} {
			t.Run(how+" "+kubeletRoot, func(t *testing.T) {
				objs := render(t, dir(t, kubeletRoot))
				for _, obj := range objs {
					assert.Empty(t, stringsNaming(obj.Object, defaultKubeletRoot, kubeletRoot, obj.GetKind()+"/"+obj.GetName()),
						"kubelet paths that do not derive from the setting")
				}
				assertKubeletPaths(t, renderedCSI(t, objs), kubeletRoot)
			})
		}
	}
}

// assertKubeletPaths: $(KUBELET_DIR) is the root, every hostPath lies below it and is mounted at
// its node path, and the arguments name the kubelet's directories through $(KUBELET_DIR) only.
func assertKubeletPaths(t *testing.T, ds *appsv1.DaemonSet, kubeletRoot string) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	ctr := spec.Containers[0]
	env := map[string]string{}
	for _, e := range ctr.Env {
		env[e.Name] = e.Value
	}
	assert.Equal(t, kubeletRoot, env["KUBELET_DIR"])
	hostPaths := 0
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			continue
		}
		hostPaths++
		assert.True(t, strings.HasPrefix(v.HostPath.Path, kubeletRoot+"/"), "volume %s: %s", v.Name, v.HostPath.Path)
		for _, m := range ctr.VolumeMounts {
			if m.Name == v.Name {
				assert.Equal(t, v.HostPath.Path, m.MountPath, "volume %s is mounted at its node path", v.Name)
			}
		}
	}
	assert.Equal(t, 3, hostPaths, "plugin, registration and pods directories")
	for _, flag := range []string{"--endpoint", "--kubelet-registration-dir"} {
		assert.True(t, strings.HasPrefix(argValue(ctr.Args, flag), "$(KUBELET_DIR)/"), "%s=%s", flag, argValue(ctr.Args, flag))
	}
}

// stringsNaming lists the string values (and keys) below v that name old once every mention of
// the new root is set aside, each with its path.
func stringsNaming(v any, old, newRoot, path string) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			out = append(out, stringsNaming(k, old, newRoot, path+"."+k+"(key)")...)
			out = append(out, stringsNaming(x, old, newRoot, path+"."+k)...)
		}
	case []any:
		for i, x := range v {
			out = append(out, stringsNaming(x, old, newRoot, path+"["+strconv.Itoa(i)+"]")...)
		}
	case string:
		if strings.Contains(strings.ReplaceAll(v, newRoot, ""), old) {
			out = append(out, path+": "+v)
		}
	}
	return out
}

func renderedCSI(t *testing.T, objs []*unstructured.Unstructured) *appsv1.DaemonSet {
	t.Helper()
	obj := findRendered(objs, "DaemonSet", nodeNS, "connectors-csi")
	require.NotNil(t, obj)
	var ds appsv1.DaemonSet
	fromUnstructured(t, obj, &ds)
	return &ds
}

// editedKubeletRoot is a copy of config/ with the setting's file edited; it returns the copy's
// config/default.
func editedKubeletRoot(t *testing.T, kubeletRoot string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "config")
	copyTree(t, filepath.Join(root, "config"), dst)
	file := filepath.Join(dst, "default", "kubelet-root.yaml")
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	setting := "path: " + defaultKubeletRoot + "\n"
	require.Equal(t, 1, strings.Count(string(raw), setting), "%s sets data.path once", file)
	require.NoError(t, os.WriteFile(file, []byte(strings.Replace(string(raw), setting, "path: "+kubeletRoot+"\n", 1)), 0o644))
	return filepath.Join(dst, "default")
}

// overlayKubeletRoot is an overlay of config/default as README shows: a Component of its own
// patches the setting, then config/kubelet-root derives the paths again.
func overlayKubeletRoot(t *testing.T, kubeletRoot string) string {
	t.Helper()
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(root, "config", p))
		require.NoError(t, err)
		return r
	}
	write := func(name, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	write("kustomization.yaml", "resources: ["+rel("default")+"]\ncomponents: [kubelet-root, "+rel("kubelet-root")+"]\n")
	write("kubelet-root/kustomization.yaml", `apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
patches:
- patch: |-
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: connectors-kubelet-root, namespace: connectors-system}
    data: {path: `+kubeletRoot+`}
`)
	return dir
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), raw, 0o644)
	})
	require.NoError(t, err)
}
