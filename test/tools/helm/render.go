package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// object is one rendered Kubernetes object, as kustomize's resources give it.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

func (o object) metadata() map[string]any { m, _ := o["metadata"].(map[string]any); return m }

func (o object) name() string { s, _ := o.metadata()["name"].(string); return s }

func (o object) namespace() string { s, _ := o.metadata()["namespace"].(string); return s }

// id is kind/name, how the generator's tables name objects (namespaces differ per install).
func (o object) id() string { return o.kind() + "/" + o.name() }

// kustomizeRun builds a kustomization directory with the kustomize Go API as kubectl kustomize
// does: no plugins, files only from below the kustomization's root, and objects in kustomize's
// legacy order (Namespaces and CRDs first) unless the kustomization sets sortOptions.
func kustomizeRun(fsys filesys.FileSystem, dir string) (resmap.ResMap, error) {
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionUnspecified
	m, err := krusty.MakeKustomizer(opts).Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return m, nil
}

// Kustomize renders a kustomization directory and returns its objects in output order, as
// kubectl kustomize prints them (and kubectl apply -k sends them): parsed from kustomize's YAML
// output, not from its in-memory resources, which differ in the whitespace of some folded
// scalars (a more-indented line in a ">-" CEL expression comes out after a blank line).
func Kustomize(fsys filesys.FileSystem, dir string) ([]object, error) {
	text, err := KustomizeYAML(fsys, dir)
	if err != nil {
		return nil, err
	}
	objs, err := parseYAML(string(text))
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return objs, nil
}

// parseYAML reads a multi-document YAML stream into objects, skipping empty documents.
func parseYAML(text string) ([]object, error) {
	dec := yaml.NewDecoder(strings.NewReader(text))
	var out []object
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
}

// KustomizeYAML renders a kustomization directory as one multi-document YAML stream: what
// kubectl kustomize prints, and what make install-file writes.
func KustomizeYAML(fsys filesys.FileSystem, dir string) ([]byte, error) {
	m, err := kustomizeRun(fsys, dir)
	if err != nil {
		return nil, err
	}
	return m.AsYaml()
}

// ProductVersion reads the product version, the constant Version in test/images/names.go (the
// tag of the committed image names), without importing that package: this module keeps its
// dependencies apart from the product's.
func ProductVersion(repo string) (string, error) {
	file := filepath.Join(repo, "test", "images", "names.go")
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		return "", err
	}
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if name.Name != "Version" || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					return strconv.Unquote(lit.Value)
				}
			}
		}
	}
	return "", fmt.Errorf("%s: no string constant Version", file)
}
