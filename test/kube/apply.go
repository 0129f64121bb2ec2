package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/alauda/harbor-connector/test/clients"
)

// ApplyFiles creates every object of the given multi-document YAML files (paths relative to the
// repository root) with c, in file order; objects that already exist are left as they are.
// For the install's RBAC: the suites run the product under the accounts config/ gives it.
func ApplyFiles(ctx context.Context, c client.Client, paths ...string) error {
	root, err := clients.RepoRoot()
	if err != nil {
		return err
	}
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return err
		}
		objs, err := decodeObjects(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, u := range objs {
			if err := c.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: %s %s/%s: %w", p, u.GetKind(), u.GetNamespace(), u.GetName(), err)
			}
		}
	}
	return nil
}

// Kustomize renders a kustomization directory with the test bed's kubectl (`kubectl kustomize`,
// the install's one rendering) and returns its objects in output order.
func Kustomize(env *envtest.Environment, dir string) ([]*unstructured.Unstructured, error) {
	stdout, stderr, err := Kubectl(env, "kustomize", dir)
	if err != nil {
		msg := ""
		if stderr != nil {
			b, _ := io.ReadAll(stderr)
			msg = string(b)
		}
		return nil, fmt.Errorf("kubectl kustomize %s: %w: %s", dir, err, msg)
	}
	objs, err := decodeObjects(stdout)
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %w", dir, err)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("kubectl kustomize %s rendered nothing", dir)
	}
	return objs, nil
}

// decodeObjects reads a multi-document YAML (or JSON) stream, skipping empty documents.
func decodeObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if obj != nil {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// ServiceAccountUser is the user name the API server gives a ServiceAccount's tokens.
func ServiceAccountUser(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// AsServiceAccount is cfg (an admin's) impersonating a ServiceAccount: the API server then
// authorises every request as that account (with its groups), by the RBAC applied to it.
func AsServiceAccount(cfg *rest.Config, namespace, name string) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Impersonate = rest.ImpersonationConfig{UserName: ServiceAccountUser(namespace, name)}
	return out
}
