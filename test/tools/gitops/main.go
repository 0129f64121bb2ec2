// Command gitops-drift answers one question for a Git-like directory of manifests: would Argo CD
// or Flux report the live objects as drifted from it? It runs each tool's own code, never a
// re-implementation: Argo CD v3.2.12's (github.com/argoproj/argo-cd/v3 util/argo/diff, with the
// gitops-engine that release is built with) and Flux's server-side-apply library
// (github.com/fluxcd/pkg/ssa v0.63.0, ResourceManager.Diff). It also syncs the set the way each
// tool does, because the apply method decides what a diff sees (the last-applied annotation,
// field managers).
//
//	gitops-drift apply --tool argocd|flux [flags] DIR
//	gitops-drift diff  --tool argocd|argocd-ssd|argocd-ssd-webhook|flux|all [flags] DIR
//
// DIR: the *.yaml, *.yml and *.json files directly in it, in name order, as Git holds them.
// --namespace puts every namespaced object in a namespace (Argo CD's destination namespace,
// Flux's targetNamespace); without it objects without one go to "default".
//
// apply, --tool argocd: Argo CD's sync (gitops-engine applyObject): each object with the
// Application's tracking annotation argocd.argoproj.io/tracking-id, applied by gitops-engine's
// kubectl operations with manager argocd-controller: client-side apply (kubectl's, writing the
// last-applied annotation), or server-side apply (forced) when the Application passed with
// --argocd-application has the sync option ServerSideApply=true or the object the annotation
// argocd.argoproj.io/sync-options: ServerSideApply=true.
// apply, --tool flux: kustomize-controller's: objects normalized (ssa/normalize), labelled with
// the Kustomization's owner labels (--flux-kustomization), ResourceManager.ApplyAllStaged with
// ssa.DefaultApplyOptions: a forced server-side apply with manager kustomize-controller of the
// objects a dry-run shows as new or drifted.
//
// diff applies nothing. For each object and tool it prints "in sync", "drift" with the fields
// that differ (live value, the value the tool wants), or "error" when the tool cannot compare
// (e.g. the dry-run is refused; Argo CD shows a ComparisonError, Flux fails the reconciliation):
//
//   - argocd: Argo CD's comparison for the Application (--argocd-application; default: one with
//     no settings) and argocd-cm (--argocd-cm; default: the empty one an install has), its
//     DiffConfig built as controller/state.go CompareAppState builds it, no diff cache: the legacy
//     three-way diff against the last-applied annotation; the structured-merge diff if the
//     Application syncs with ServerSideApply=true (Argo CD 3.6 uses Server-Side Diff there:
//     argocd-ssd); Server-Side Diff if its compare-options annotation says ServerSideDiff=true;
//     spec.ignoreDifferences and argocd-cm's resource.customizations and compareoptions apply.
//   - argocd-ssd: the same with compare option ServerSideDiff=true added: a server-side apply
//     dry-run with manager argocd-controller, from whose result Argo CD removes what mutating
//     webhooks changed in fields argocd-controller does not own (its default).
//   - argocd-ssd-webhook: ServerSideDiff=true,IncludeMutationWebhook=true: the dry-run result as
//     the API server returned it.
//   - flux: ResourceManager.Diff with ssa.DefaultDiffOptions on the objects apply --tool flux
//     would apply: a forced server-side apply dry-run with manager kustomize-controller, compared
//     with the live object in labels, annotations, and everything outside metadata and status.
//   - all: the four, in that order.
//
// An object missing from the cluster is drift for every tool. -o json prints the results as a
// JSON array of {tool, object, status, missing, fields: [{path, live, desired}], error}. The
// exit code is 0 when every result is "in sync" (apply: every object applied), 1 when one is not,
// 2 on a usage or setup error (unreadable kubeconfig or manifests, unknown kind).
//
// It is its own module, so the tools' dependency trees (Argo CD pins k8s.io to its release) never
// move the product's versions, and the root module's go build/vet/test ./... skip it.
// test/tools/gitops.sh builds it into the project cache.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// The diff tools. Each is one comparison a controller makes, with the options named.
const (
	// toolArgoCD is Argo CD's comparison with the Application's own options (--argocd-application);
	// by default the legacy three-way diff against the last-applied annotation, or the
	// structured-merge diff when the Application syncs with ServerSideApply=true.
	toolArgoCD = "argocd"
	// toolArgoCDSSD adds compare-option ServerSideDiff=true: a server-side apply dry-run with
	// manager argocd-controller, whose webhook-made changes Argo CD strips by default.
	toolArgoCDSSD = "argocd-ssd"
	// toolArgoCDSSDWebhook adds ServerSideDiff=true,IncludeMutationWebhook=true: the dry-run
	// result is compared as the API server returned it, webhook changes included.
	toolArgoCDSSDWebhook = "argocd-ssd-webhook"
	// toolFlux is kustomize-controller's drift check: ssa.ResourceManager.Diff (a server-side
	// apply dry-run with manager kustomize-controller, forced) with ssa.DefaultDiffOptions.
	toolFlux = "flux"
	toolAll  = "all"
)

var diffTools = []string{toolArgoCD, toolArgoCDSSD, toolArgoCDSSDWebhook, toolFlux}

const usage = `usage:
  gitops-drift apply --tool argocd|flux [flags] DIR
  gitops-drift diff  --tool argocd|argocd-ssd|argocd-ssd-webhook|flux|all [flags] DIR

DIR holds the desired manifests (*.yaml, *.yml, *.json; not recursive), as in Git.
apply syncs them the way the tool does; diff applies nothing and prints, per object and tool,
"in sync" or the drifted fields. Exit code: 0 all in sync (or applied), 1 drift or a failed
object, 2 usage or setup error. gitops-drift diff -h lists the flags.
`

// options are the command line of one run.
type options struct {
	command     string
	tool        string
	dir         string
	kubeconfig  string
	namespace   string
	output      string
	application string
	argoCDCM    string
	kustomize   string
	verbose     bool
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command; tests call it with their own arguments and writers.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(ctx) // ends the informers Argo CD's settings manager starts
	defer cancel()
	o, err := parseArgs(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "gitops-drift:", err)
		}
		return 2
	}
	quietLibraries(o.verbose, stderr)
	config, err := restConfig(o.kubeconfig)
	if err != nil {
		fmt.Fprintln(stderr, "gitops-drift:", err)
		return 2
	}
	objects, err := readManifests(o.dir)
	if err != nil {
		fmt.Fprintln(stderr, "gitops-drift:", err)
		return 2
	}
	cluster, err := newCluster(config)
	if err != nil {
		fmt.Fprintln(stderr, "gitops-drift:", err)
		return 2
	}
	if err := cluster.placeInNamespace(objects, o.namespace); err != nil {
		fmt.Fprintln(stderr, "gitops-drift:", err)
		return 2
	}
	if o.command == "apply" {
		return runApply(ctx, o, cluster, objects, stdout, stderr)
	}
	return runDiff(ctx, o, cluster, objects, stdout, stderr)
}

func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	if len(args) == 0 || (args[0] != "apply" && args[0] != "diff") {
		fmt.Fprint(stderr, usage)
		return o, errors.New("the first argument must be apply or diff")
	}
	o.command = args[0]
	fs := flag.NewFlagSet("gitops-drift "+o.command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage, "\nflags:\n"); fs.PrintDefaults() }
	fs.StringVar(&o.tool, "tool", "", "apply: argocd or flux; diff: argocd, argocd-ssd, argocd-ssd-webhook, flux or all (the four)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&o.namespace, "namespace", "", "put every namespaced object in this namespace (Argo CD's destination namespace, Flux's targetNamespace); objects without one and no flag go to \"default\"")
	fs.StringVar(&o.output, "o", "text", "diff output: text or json")
	fs.StringVar(&o.application, "argocd-application", "", "an Argo CD Application manifest whose settings apply: annotation argocd.argoproj.io/compare-options, spec.ignoreDifferences, spec.syncPolicy.syncOptions (ServerSideApply=true, Validate=false); default: none of them")
	fs.StringVar(&o.argoCDCM, "argocd-cm", "", "an argocd-cm ConfigMap manifest (resource.customizations.*, resource.compareoptions, application.resourceTrackingMethod); default: the empty one Argo CD installs")
	fs.StringVar(&o.kustomize, "flux-kustomization", "flux-system/gitops-drift", "namespace/name of the Flux Kustomization, for the owner labels kustomize-controller sets")
	fs.BoolVar(&o.verbose, "v", false, "let the libraries log (Argo CD, kubectl, controller-runtime)")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return o, errors.New("exactly one manifest directory is needed")
	}
	o.dir = fs.Arg(0)
	valid := diffTools
	if o.command == "apply" {
		valid = []string{toolArgoCD, toolFlux}
	} else {
		valid = append(valid, toolAll)
	}
	if !slices.Contains(valid, o.tool) {
		return o, fmt.Errorf("%s --tool must be one of %s, not %q", o.command, strings.Join(valid, ", "), o.tool)
	}
	if o.output != "text" && o.output != "json" {
		return o, fmt.Errorf("-o must be text or json, not %q", o.output)
	}
	if _, _, ok := strings.Cut(o.kustomize, "/"); !ok {
		return o, fmt.Errorf("--flux-kustomization must be namespace/name, not %q", o.kustomize)
	}
	return o, nil
}

func runApply(ctx context.Context, o options, cluster *cluster, objects []*unstructured.Unstructured, stdout, stderr io.Writer) int {
	var err error
	switch o.tool {
	case toolArgoCD:
		var argo *argoCD
		if argo, err = newArgoCD(ctx, cluster, o); err == nil {
			err = argo.apply(ctx, objects, stdout)
		}
	case toolFlux:
		err = newFlux(cluster, o).apply(ctx, objects, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "gitops-drift: %s apply: %v\n", o.tool, err)
		return 1
	}
	return 0
}

func runDiff(ctx context.Context, o options, cluster *cluster, objects []*unstructured.Unstructured, stdout, stderr io.Writer) int {
	tools := []string{o.tool}
	if o.tool == toolAll {
		tools = diffTools
	}
	var results []result
	var argo *argoCD
	for _, tool := range tools {
		var rs []result
		var err error
		switch tool {
		case toolFlux:
			rs, err = newFlux(cluster, o).diff(ctx, objects)
		default:
			if argo == nil {
				if argo, err = newArgoCD(ctx, cluster, o); err != nil {
					break
				}
			}
			rs, err = argo.diff(ctx, objects, tool)
		}
		if err != nil {
			fmt.Fprintf(stderr, "gitops-drift: %s diff: %v\n", tool, err)
			return 2
		}
		results = append(results, rs...)
	}
	if err := printResults(stdout, o.output, results); err != nil {
		fmt.Fprintln(stderr, "gitops-drift:", err)
		return 2
	}
	for _, r := range results {
		if r.Status != statusInSync {
			return 1
		}
	}
	return 0
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	config, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	config.QPS, config.Burst = 50, 100
	return config, nil
}

// quietLibraries sends the libraries' logs (logrus for Argo CD, klog for kubectl, logr for
// controller-runtime) to stderr at warning level, or everything with -v.
func quietLibraries(verbose bool, stderr io.Writer) {
	logrus.SetOutput(stderr)
	logrus.SetLevel(logrus.WarnLevel)
	if verbose {
		logrus.SetLevel(logrus.DebugLevel)
	}
	klog.SetOutput(stderr)
	klog.LogToStderr(false)
	ctrl.SetLogger(zap.New(zap.WriteTo(stderr), zap.UseDevMode(verbose)))
}
