package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/argo"
	argodiff "github.com/argoproj/argo-cd/v3/util/argo/diff"
	"github.com/argoproj/argo-cd/v3/util/argo/normalizers"
	argokube "github.com/argoproj/argo-cd/v3/util/kube"
	"github.com/argoproj/argo-cd/v3/util/settings"
	"github.com/argoproj/gitops-engine/pkg/diff"
	synccommon "github.com/argoproj/gitops-engine/pkg/sync/common"
	resourceutil "github.com/argoproj/gitops-engine/pkg/sync/resource"
	"github.com/argoproj/gitops-engine/pkg/utils/kube"
	"github.com/argoproj/gitops-engine/pkg/utils/tracing"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/kubernetes/fake"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/util/openapi"
	"sigs.k8s.io/yaml"
)

// argoCDNamespace is where the Application and argocd-cm live; with the Application in it, the
// app's instance name (in tracking annotations) is its plain name, as in a default install.
const argoCDNamespace = "argocd"

// argoCD compares and syncs the way Argo CD's application controller does for one Application:
// the same settings objects, the same DiffConfig built as controller/state.go CompareAppState
// builds it, the same gitops-engine kubectl operations.
type argoCD struct {
	cluster     *cluster
	app         *v1alpha1.Application
	settings    *settings.SettingsManager
	kubectl     *kube.KubectlCmd
	openAPI     openapi.Resources
	gvkParser   *managedfields.GvkParser
	labelKey    string
	tracking    string
	installID   string
	destination string
}

func newArgoCD(ctx context.Context, c *cluster, o options) (*argoCD, error) {
	app, err := readApplication(o.application, o.namespace)
	if err != nil {
		return nil, err
	}
	cm, err := readArgoCDCM(o.argoCDCM)
	if err != nil {
		return nil, err
	}
	// The settings manager reads argocd-cm through an informer; a fake clientset holding only that
	// ConfigMap gives Argo CD's own defaults and parsing for everything the diff reads from it.
	mgr := settings.NewSettingsManager(ctx, fake.NewClientset(cm), argoCDNamespace)
	a := &argoCD{cluster: c, app: app, settings: mgr, destination: app.Spec.Destination.Namespace}
	if a.labelKey, err = mgr.GetAppInstanceLabelKey(); err != nil {
		return nil, fmt.Errorf("argocd-cm: %w", err)
	}
	if a.tracking, err = mgr.GetTrackingMethod(); err != nil {
		return nil, fmt.Errorf("argocd-cm: %w", err)
	}
	if a.installID, err = mgr.GetInstallationID(); err != nil {
		return nil, fmt.Errorf("argocd-cm: %w", err)
	}
	a.kubectl = &kube.KubectlCmd{Log: logr.Discard(), Tracer: tracing.NopTracer{}}
	// The cluster cache loads the same schema: the GVK parser feeds structured-merge and
	// server-side diffs, the OpenAPI resources kubectl's apply.
	if a.openAPI, a.gvkParser, err = a.kubectl.LoadOpenAPISchema(c.config); err != nil {
		return nil, fmt.Errorf("loading the API server's OpenAPI schema: %w", err)
	}
	return a, nil
}

// readApplication reads the Application whose settings apply (or makes an empty one) and sets
// its destination namespace.
func readApplication(path, namespace string) (*v1alpha1.Application, error) {
	app := &v1alpha1.Application{}
	if err := readYAML(path, app); err != nil {
		return nil, fmt.Errorf("reading the Argo CD Application: %w", err)
	}
	if path != "" && app.Kind != "Application" {
		return nil, fmt.Errorf("%s: kind %q is not an Argo CD Application", path, app.Kind)
	}
	if app.Name == "" {
		app.Name = "gitops-drift"
	}
	app.Namespace = argoCDNamespace
	if namespace != "" {
		app.Spec.Destination.Namespace = namespace
	}
	return app, nil
}

func readArgoCDCM(path string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	if err := readYAML(path, cm); err != nil {
		return nil, fmt.Errorf("reading argocd-cm: %w", err)
	}
	cm.ObjectMeta = metav1.ObjectMeta{
		Name:      common.ArgoCDConfigMapName,
		Namespace: argoCDNamespace,
		Labels:    map[string]string{"app.kubernetes.io/part-of": "argocd"},
	}
	return cm, nil
}

// readYAML decodes the file at path, if one is named, into obj, refusing unknown fields.
func readYAML(path string, obj any) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// targets are the desired objects as the repo server hands them to the controller: with the
// Application's tracking annotation (or label) set.
func (a *argoCD) targets(objects []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	tracking := argo.NewResourceTracking()
	targets := make([]*unstructured.Unstructured, len(objects))
	for i, o := range objects {
		t := o.DeepCopy()
		if err := tracking.SetAppInstance(t, a.labelKey, a.app.Name, a.destination, v1alpha1.TrackingMethod(a.tracking), a.installID); err != nil {
			return nil, fmt.Errorf("%s: setting Argo CD's tracking: %w", describe(o), err)
		}
		targets[i] = t
	}
	return targets, nil
}

// apply syncs the objects as the controller's sync does (gitops-engine applyObject): kubectl
// apply through gitops-engine's resource operations with manager argocd-controller, client-side
// (with the last-applied annotation) unless ServerSideApply=true is a sync option of the
// Application or an annotation of the object, validated unless Validate=false.
func (a *argoCD) apply(ctx context.Context, objects []*unstructured.Unstructured, stdout io.Writer) error {
	targets, err := a.targets(objects)
	if err != nil {
		return err
	}
	ops, cleanup, err := a.kubectl.ManageResources(a.cluster.config, a.openAPI)
	if err != nil {
		return err
	}
	defer cleanup()
	options := a.syncOptions()
	for _, t := range targets {
		serverSideApply := options.HasOption(synccommon.SyncOptionServerSideApply) ||
			resourceutil.HasAnnotationOption(t, synccommon.AnnotationSyncOptions, synccommon.SyncOptionServerSideApply)
		if resourceutil.HasAnnotationOption(t, synccommon.AnnotationSyncOptions, synccommon.SyncOptionDisableServerSideApply) {
			serverSideApply = false
		}
		validate := !options.HasOption(synccommon.SyncOptionsDisableValidation) &&
			!resourceutil.HasAnnotationOption(t, synccommon.AnnotationSyncOptions, synccommon.SyncOptionsDisableValidation)
		msg, err := ops.ApplyResource(ctx, t, cmdutil.DryRunNone, false, validate, serverSideApply, common.ArgoCDSSAManager)
		if err != nil {
			return fmt.Errorf("%s: %w", describe(t), err)
		}
		mode := "client-side apply"
		if serverSideApply {
			mode = "server-side apply"
		}
		fmt.Fprintf(stdout, "argocd (%s): %s\n", mode, msg)
	}
	return nil
}

func (a *argoCD) syncOptions() v1alpha1.SyncOptions {
	if a.app.Spec.SyncPolicy == nil {
		return nil
	}
	return a.app.Spec.SyncPolicy.SyncOptions
}

// withCompareOptions returns the Application with more compare options in its annotation, the
// way a user sets them.
func (a *argoCD) withCompareOptions(extra ...string) *v1alpha1.Application {
	app := a.app.DeepCopy()
	if len(extra) == 0 {
		return app
	}
	if app.Annotations == nil {
		app.Annotations = map[string]string{}
	}
	values := resourceutil.GetAnnotationCSVs(app, common.AnnotationCompareOptions)
	values = append(values, extra...)
	app.Annotations[common.AnnotationCompareOptions] = strings.Join(values, ",")
	return app
}

// diff compares each object with its live counterpart as the controller's CompareAppState does,
// for the Application with the compare options the tool adds.
func (a *argoCD) diff(ctx context.Context, objects []*unstructured.Unstructured, tool string) ([]result, error) {
	var app *v1alpha1.Application
	switch tool {
	case toolArgoCD:
		app = a.withCompareOptions()
	case toolArgoCDSSD:
		app = a.withCompareOptions("ServerSideDiff=true")
	case toolArgoCDSSDWebhook:
		app = a.withCompareOptions("ServerSideDiff=true", "IncludeMutationWebhook=true")
	default:
		return nil, fmt.Errorf("not an Argo CD tool: %s", tool)
	}
	targets, err := a.targets(objects)
	if err != nil {
		return nil, err
	}
	config, cleanup, err := a.diffConfig(app)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var results []result
	for _, t := range targets {
		r := result{Tool: tool, Object: describe(t)}
		// Paired by key, as gitops-engine's sync.Reconcile pairs targets with the cluster cache.
		live, err := a.cluster.live(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", describe(t), err)
		}
		if live == nil {
			r.Status, r.Missing = statusDrift, true
			results = append(results, r)
			continue
		}
		res, err := argodiff.StateDiff(live, t, config)
		switch {
		case err != nil:
			r.Status, r.Error = statusError, err.Error()
		case res.Modified:
			r.Status = statusDrift
			r.Fields, err = resultFields(res)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", describe(t), err)
			}
		default:
			r.Status = statusInSync
		}
		results = append(results, r)
	}
	return results, nil
}

// diffConfig builds the DiffConfig exactly as controller/state.go CompareAppState does, with no
// diff cache (a refresh).
func (a *argoCD) diffConfig(app *v1alpha1.Application) (argodiff.DiffConfig, func(), error) {
	cleanup := func() {}
	overrides, err := a.settings.GetResourceOverrides()
	if err != nil {
		return nil, cleanup, fmt.Errorf("argocd-cm resource overrides: %w", err)
	}
	compareOptions, err := a.settings.GetResourceCompareOptions()
	if err != nil {
		return nil, cleanup, fmt.Errorf("argocd-cm compare options: %w", err)
	}
	serverSideDiff := resourceutil.HasAnnotationOption(app, common.AnnotationCompareOptions, "ServerSideDiff=true")
	if resourceutil.HasAnnotationOption(app, common.AnnotationCompareOptions, "ServerSideDiff=false") {
		serverSideDiff = false
	}
	builder := argodiff.NewDiffConfigBuilder().
		WithDiffSettings(app.Spec.IgnoreDifferences, overrides, compareOptions.IgnoreAggregatedRoles, normalizers.IgnoreNormalizerOpts{}).
		WithTracking(a.labelKey, a.tracking).
		WithNoCache()
	if resourceutil.HasAnnotationOption(app, common.AnnotationCompareOptions, "IncludeMutationWebhook=true") {
		builder.WithIgnoreMutationWebhook(false)
	}
	builder.WithGVKParser(a.gvkParser)
	builder.WithManager(common.ArgoCDSSAManager)
	builder.WithServerSideDiff(serverSideDiff)
	if serverSideDiff {
		applier, done, err := argokube.ManageServerSideDiffDryRuns(a.cluster.config, a.openAPI, nil)
		if err != nil {
			return nil, cleanup, fmt.Errorf("server-side diff dry-run applier: %w", err)
		}
		cleanup = done
		builder.WithServerSideDryRunner(diff.NewK8sServerSideDryRunner(applier))
	}
	if app.Spec.SyncPolicy != nil && app.Spec.SyncPolicy.SyncOptions.HasOption("ServerSideApply=true") {
		builder.WithStructuredMergeDiff(true)
	}
	config, err := builder.Build()
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	return config, cleanup, nil
}

// resultFields explains a drift: the fields in which the predicted live state (what the object
// would be after a sync) differs from the normalized live state, both as Argo CD computed them.
func resultFields(res diff.DiffResult) ([]fieldChange, error) {
	var live, predicted any
	if err := json.Unmarshal(res.NormalizedLive, &live); err != nil {
		return nil, fmt.Errorf("normalized live state: %w", err)
	}
	if err := json.Unmarshal(res.PredictedLive, &predicted); err != nil {
		return nil, fmt.Errorf("predicted live state: %w", err)
	}
	return changedFields(live, predicted), nil
}
