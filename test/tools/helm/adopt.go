package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// Moving a kustomize install (make deploy: kubectl's server-side apply, field manager
// "kubectl") under Helm (helm v4 applies server-side too, as manager "helm") leaves every field
// owned by both managers. Server-side apply removes a field only when no manager owns it any
// more, so a field the chart no longer sets (a volume mount moved to another path, a flag
// dropped) would stay for good, owned by kubectl, and pods would run with the old and the new
// one side by side. adoptFields hands kubectl's applied fields to helm before the first helm
// upgrade, so helm owns them alone, as if it had installed the objects.

// helmFieldManager is the field manager helm v4 applies as: the base name of its command.
const helmFieldManager = "helm"

// transferApplyOwner moves the fields manager from applied (operation Apply) to manager to,
// merged into to's Apply entry for the same API version and subresource when there is one (the
// server keeps one such entry per manager). It reports whether anything changed.
func transferApplyOwner(entries []metav1.ManagedFieldsEntry, from, to string) ([]metav1.ManagedFieldsEntry, bool, error) {
	out := make([]metav1.ManagedFieldsEntry, 0, len(entries))
	applied := map[string]int{} // API version and subresource -> index in out of to's Apply entry
	changed := false
	for _, e := range entries {
		if e.Operation == metav1.ManagedFieldsOperationApply && e.Manager == from {
			e.Manager, changed = to, true
		}
		if e.Operation == metav1.ManagedFieldsOperationApply && e.Manager == to {
			key := e.APIVersion + "|" + e.Subresource
			if i, ok := applied[key]; ok {
				union, err := unionFields(out[i].FieldsV1, e.FieldsV1)
				if err != nil {
					return nil, false, err
				}
				out[i].FieldsV1 = union
				continue
			}
			applied[key] = len(out)
		}
		out = append(out, e)
	}
	return out, changed, nil
}

func unionFields(a, b *metav1.FieldsV1) (*metav1.FieldsV1, error) {
	set := func(f *metav1.FieldsV1) (*fieldpath.Set, error) {
		s := &fieldpath.Set{}
		if f == nil || len(f.Raw) == 0 {
			return s, nil
		}
		if err := s.FromJSON(strings.NewReader(string(f.Raw))); err != nil {
			return nil, fmt.Errorf("reading managed fields: %w", err)
		}
		return s, nil
	}
	sa, err := set(a)
	if err != nil {
		return nil, err
	}
	sb, err := set(b)
	if err != nil {
		return nil, err
	}
	raw, err := sa.Union(sb).ToJSON()
	if err != nil {
		return nil, err
	}
	return &metav1.FieldsV1{Raw: raw}, nil
}

// adoptFields hands from's applied fields to to on every object of the install that exists on
// the cluster of cfg, and returns how many objects it changed. A request that sets
// managedFields is stored with exactly those, without an entry for the request itself.
func adoptFields(ctx context.Context, cfg *rest.Config, objs []object, from, to string) (int, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return 0, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, o := range objs {
		apiVersion, _ := o["apiVersion"].(string)
		gv, err := schema.ParseGroupVersion(apiVersion)
		if err != nil {
			return changed, err
		}
		mapping, err := mapper.RESTMapping(gv.WithKind(o.kind()).GroupKind(), gv.Version)
		if err != nil {
			return changed, fmt.Errorf("%s %s: %w", apiVersion, o.id(), err)
		}
		var res dynamic.ResourceInterface = client.Resource(mapping.Resource)
		if o.namespace() != "" {
			res = client.Resource(mapping.Resource).Namespace(o.namespace())
		}
		did := false
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			live, err := res.Get(ctx, o.name(), metav1.GetOptions{})
			if err != nil {
				return err
			}
			entries, moved, err := transferApplyOwner(live.GetManagedFields(), from, to)
			if err != nil || !moved {
				return err
			}
			live.SetManagedFields(entries)
			_, err = res.Update(ctx, live, metav1.UpdateOptions{})
			did = err == nil
			return err
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return changed, fmt.Errorf("%s %s/%s: %w", o.kind(), o.namespace(), o.name(), err)
		}
		if did {
			changed++
		}
	}
	return changed, nil
}

// adoptFieldsFrom reads the kubeconfig ($KUBECONFIG, else ~/.kube/config) and hands from's applied
// fields on the install's objects to to.
func adoptFieldsFrom(ctx context.Context, objs []object, from, to string) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	n, err := adoptFields(ctx, cfg, objs, from, to)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "handed the fields %q applied to %q on %d of %d objects\n", from, to, n, len(objs))
	return nil
}
