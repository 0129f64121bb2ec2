package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// cluster is the API server both tools talk to: its REST config, a discovery-backed REST mapper
// and an unstructured client.
type cluster struct {
	config *rest.Config
	mapper meta.RESTMapper
	client client.Client
}

func newCluster(config *rest.Config) (*cluster, error) {
	httpClient, err := rest.HTTPClientFor(config)
	if err != nil {
		return nil, err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(config, httpClient)
	if err != nil {
		return nil, fmt.Errorf("discovering the API server's resources: %w", err)
	}
	c, err := client.New(config, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, err
	}
	return &cluster{config: config, mapper: mapper, client: c}, nil
}

// placeInNamespace sets the namespace of every namespaced object: to namespace when it is given
// (Argo CD's destination namespace, Flux's targetNamespace), else to "default" where the
// manifest names none, as kubectl does.
func (c *cluster) placeInNamespace(objects []*unstructured.Unstructured, namespace string) error {
	for _, o := range objects {
		namespaced, err := c.isNamespaced(o)
		if err != nil {
			return err
		}
		switch {
		case !namespaced:
		case namespace != "":
			o.SetNamespace(namespace)
		case o.GetNamespace() == "":
			o.SetNamespace("default")
		}
	}
	return nil
}

func (c *cluster) isNamespaced(o *unstructured.Unstructured) (bool, error) {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", gvk, o.GetName(), err)
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// live returns the object as the API server holds it, or nil when there is none.
func (c *cluster) live(ctx context.Context, desired *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(desired.GroupVersionKind())
	err := c.client.Get(ctx, client.ObjectKeyFromObject(desired), live)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return live, err
}

// readManifests reads every *.yaml, *.yml and *.json file directly in dir (in name order, each
// file's documents in order), as Argo CD's directory source and kustomize's resources list do.
func readManifests(dir string) ([]*unstructured.Unstructured, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the manifest directory: %w", err)
	}
	var objects []*unstructured.Unstructured
	for _, e := range entries {
		if e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, strings.ToLower(filepath.Ext(e.Name()))) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		objs, err := decodeManifests(f, path)
		f.Close()
		if err != nil {
			return nil, err
		}
		objects = append(objects, objs...)
	}
	if len(objects) == 0 {
		return nil, fmt.Errorf("no manifests in %s", dir)
	}
	return objects, nil
}

func decodeManifests(f *os.File, path string) ([]*unstructured.Unstructured, error) {
	var objects []*unstructured.Unstructured
	decoder := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for i := 0; ; i++ {
		var doc map[string]any
		if err := decoder.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return objects, nil
			}
			return nil, fmt.Errorf("%s, document %d: %w", path, i+1, err)
		}
		if len(doc) == 0 {
			continue
		}
		o := &unstructured.Unstructured{Object: doc}
		if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
			return nil, fmt.Errorf("%s, document %d: apiVersion, kind and metadata.name are required", path, i+1)
		}
		objects = append(objects, o)
	}
}

// describe names an object as the results print it: "batch/v1 Job ns/name".
func describe(o *unstructured.Unstructured) string {
	name := o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return o.GetAPIVersion() + " " + o.GetKind() + " " + name
}
