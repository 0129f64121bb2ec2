package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/normalize"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// flux compares and applies the way Flux's kustomize-controller does, with its ssa library.
type flux struct {
	cluster   *cluster
	manager   *ssa.ResourceManager
	name      string // the Kustomization's, for the owner labels
	namespace string
}

// The field manager and owner-label prefix kustomize-controller uses.
const (
	fluxFieldManager = "kustomize-controller"
	fluxOwnerGroup   = "kustomize.toolkit.fluxcd.io"
)

func newFlux(c *cluster, o options) *flux {
	namespace, name, _ := strings.Cut(o.kustomize, "/")
	poller := polling.NewStatusPoller(c.client, c.mapper, polling.Options{})
	return &flux{
		cluster:   c,
		manager:   ssa.NewResourceManager(c.client, poller, ssa.Owner{Field: fluxFieldManager, Group: fluxOwnerGroup}),
		name:      name,
		namespace: namespace,
	}
}

// desired prepares the objects as kustomize-controller does after the kustomize build: native
// kinds normalized (defaults the API server would set, e.g. container port protocols) and the
// Kustomization's owner labels set.
func (f *flux) desired(objects []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	desired := make([]*unstructured.Unstructured, len(objects))
	for i, o := range objects {
		desired[i] = o.DeepCopy()
	}
	if err := normalize.UnstructuredList(desired); err != nil {
		return nil, err
	}
	f.manager.SetOwnerLabels(desired, f.name, f.namespace)
	return desired, nil
}

// apply is kustomize-controller's apply: ApplyAllStaged (a server-side apply with manager
// kustomize-controller, forced, of each object the dry-run shows as new or drifted) with
// ssa.DefaultApplyOptions.
func (f *flux) apply(ctx context.Context, objects []*unstructured.Unstructured, stdout io.Writer) error {
	desired, err := f.desired(objects)
	if err != nil {
		return err
	}
	changes, err := f.manager.ApplyAllStaged(ctx, desired, ssa.DefaultApplyOptions())
	if err != nil {
		return err
	}
	for _, c := range changes.Entries {
		fmt.Fprintf(stdout, "flux (server-side apply): %s %s\n", c.Subject, c.Action)
	}
	return nil
}

// diff is Flux's drift check for each object: ResourceManager.Diff with ssa.DefaultDiffOptions,
// a forced server-side apply dry-run compared with the live object (labels, annotations and
// everything outside metadata and status).
func (f *flux) diff(ctx context.Context, objects []*unstructured.Unstructured) ([]result, error) {
	desired, err := f.desired(objects)
	if err != nil {
		return nil, err
	}
	var results []result
	for _, o := range desired {
		r := result{Tool: toolFlux, Object: describe(o)}
		change, live, dryRun, err := f.manager.Diff(ctx, o, ssa.DefaultDiffOptions())
		switch {
		case err != nil:
			r.Status, r.Error = statusError, err.Error()
		case change.Action == ssa.UnchangedAction || change.Action == ssa.SkippedAction:
			r.Status = statusInSync
		case change.Action == ssa.CreatedAction:
			r.Status, r.Missing = statusDrift, true
		case live == nil || dryRun == nil:
			return nil, errors.New("ssa Diff reported a change without the objects")
		default:
			r.Status = statusDrift
			r.Fields = changedFields(comparedByFlux(live), comparedByFlux(dryRun))
		}
		results = append(results, r)
	}
	return results, nil
}

// comparedByFlux keeps what ssa's drift check compares: labels, annotations, and the object
// without metadata and status, normalized as the check normalizes it.
func comparedByFlux(o *unstructured.Unstructured) map[string]any {
	c := o.DeepCopy()
	labels, annotations := c.GetLabels(), c.GetAnnotations()
	unstructured.RemoveNestedField(c.Object, "metadata")
	unstructured.RemoveNestedField(c.Object, "status")
	_ = normalize.DryRunUnstructured(c)
	view := c.Object
	view["metadata"] = map[string]any{"labels": toAny(labels), "annotations": toAny(annotations)}
	return view
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
