package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

const manifests = "testdata/manifests"

var (
	kubeconfig string
	k8s        client.Client
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

// testMain starts a real API server and etcd (envtest, from KUBEBUILDER_ASSETS) with the
// miniature webhook registered and served, and writes an admin kubeconfig for the command.
func testMain(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run KUBEBUILDER_ASSETS=$(../k8s-assets.sh 2>/dev/null) go test ./...")
		return 1
	}
	env := &envtest.Environment{WebhookInstallOptions: envtest.WebhookInstallOptions{MutatingWebhooks: webhookConfigurations()}}
	config, err := env.Start()
	if err != nil {
		_ = env.Stop() // envtest leaves etcd and the API server running when a later step fails
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer env.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := env.WebhookInstallOptions
	server := webhook.NewServer(webhook.Options{Host: opts.LocalServingHost, Port: opts.LocalServingPort, CertDir: opts.LocalServingCertDir})
	server.Register("/"+webhookPath, &webhook.Admission{Handler: miniInjector{}})
	go func() { _ = server.Start(ctx) }()
	started := server.StartedChecker()
	for deadline := time.Now().Add(20 * time.Second); started(nil) != nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "the test webhook did not start:", started(nil))
			return 1
		}
	}
	user, err := env.AddUser(envtest.User{Name: "gitops-drift", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kc, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "gitops-drift-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if k8s, err = client.New(config, client.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// gitopsDrift runs the command as the cluster suite does and returns its stdout and exit code.
func gitopsDrift(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append(args[:1:1], append([]string{"--kubeconfig", kubeconfig}, args[1:]...)...)
	code := run(context.Background(), args, &stdout, &stderr)
	if stderr.Len() > 0 {
		t.Logf("gitops-drift %s: stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	return stdout.String(), code
}

func mustApply(t *testing.T, args ...string) {
	t.Helper()
	out, code := gitopsDrift(t, append([]string{"apply"}, args...)...)
	if code != 0 {
		t.Fatalf("gitops-drift apply %v exited %d:\n%s", args, code, out)
	}
}

func diffResults(t *testing.T, args ...string) ([]result, int) {
	t.Helper()
	out, code := gitopsDrift(t, append([]string{"diff", "-o", "json"}, args...)...)
	var results []result
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("gitops-drift diff %v exited %d with no JSON results: %v\n%s", args, code, err, out)
	}
	return results, code
}

// namespace creates a namespace selected by the given webhook mode ("" for none).
func namespace(t *testing.T, name, mode string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if mode != "" {
		ns.Labels = map[string]string{webhookLabel: mode}
	}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return name
}

// resourceVersions of the manifests' objects in ns, to show that a re-sync wrote nothing.
func resourceVersions(t *testing.T, ns string) map[string]string {
	t.Helper()
	objects, err := readManifests(manifests)
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]string{}
	for _, o := range objects {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: o.GetName()}, live); err != nil {
			t.Fatal(err)
		}
		versions[o.GetKind()] = live.GetResourceVersion()
	}
	return versions
}

// applier is one way a GitOps controller syncs, with the diff tools that see objects it synced.
type applier struct {
	name  string
	args  []string // for apply and diff
	tools []string
}

var appliers = []applier{
	{name: "argocd", args: []string{"--tool", toolArgoCD}, tools: []string{toolArgoCD, toolArgoCDSSD, toolArgoCDSSDWebhook}},
	{name: "argocd-ssa", args: []string{"--tool", toolArgoCD, "--argocd-application", "testdata/argocd/server-side-apply.yaml"}, tools: []string{toolArgoCD, toolArgoCDSSD, toolArgoCDSSDWebhook}},
	{name: "flux", args: []string{"--tool", toolFlux}, tools: []string{toolFlux}},
}

var webhookModes = []string{"", webhookUpdateToo, webhookCreateOnly}

// The verdicts TestDriftTable expects. The drifted field of the default Argo CD diff is the image
// the webhook rewrote; a webhook that does not handle UPDATE also makes every server-side dry-run
// (Argo CD's Server-Side Diff, Flux) see the manifest's image, and the dry-run of a Job is refused
// because its pod template is immutable.
const (
	podImage      = "Pod drift: spec.containers[name=app].image"
	jobImage      = "Job drift: spec.template.spec.containers[name=build].image"
	jobImmutable  = "Job error: field is immutable"
	imagesDrift   = podImage + "; " + jobImage
	createOnlySSD = podImage + "; " + jobImmutable
)

var wantTable = map[string]map[string]string{
	"argocd sync, argocd diff":                 {"none": statusInSync, webhookUpdateToo: imagesDrift, webhookCreateOnly: imagesDrift},
	"argocd sync, argocd-ssd diff":             {"none": statusInSync, webhookUpdateToo: statusInSync, webhookCreateOnly: createOnlySSD},
	"argocd sync, argocd-ssd-webhook diff":     {"none": statusInSync, webhookUpdateToo: statusInSync, webhookCreateOnly: "Pod drift: metadata.generation, spec.containers[name=app].image; " + jobImmutable},
	"argocd-ssa sync, argocd diff":             {"none": statusInSync, webhookUpdateToo: imagesDrift, webhookCreateOnly: imagesDrift},
	"argocd-ssa sync, argocd-ssd diff":         {"none": statusInSync, webhookUpdateToo: statusInSync, webhookCreateOnly: createOnlySSD},
	"argocd-ssa sync, argocd-ssd-webhook diff": {"none": statusInSync, webhookUpdateToo: statusInSync, webhookCreateOnly: "Pod drift: metadata.generation, spec.containers[name=app].image; " + jobImmutable},
	"flux sync, flux diff":                     {"none": statusInSync, webhookUpdateToo: statusInSync, webhookCreateOnly: createOnlySSD},
}

// TestDriftTable syncs the manifests with each applier into a namespace per webhook mode, compares
// them with each tool, and checks the table of verdicts (logged with -v): without a webhook
// everything is in sync; with one, each tool's default decides. Where the webhook handles UPDATE,
// syncing again must write nothing.
func TestDriftTable(t *testing.T) {
	table := map[string]map[string]string{} // row (applier, tool) -> webhook mode -> verdict
	var rows []string
	for _, a := range appliers {
		for _, mode := range webhookModes {
			ns := namespace(t, a.name+"-"+modeName(mode), mode)
			args := append(append([]string{}, a.args...), "--namespace", ns, manifests)
			mustApply(t, args...)
			for _, tool := range a.tools {
				row := a.name + " sync, " + tool + " diff"
				if table[row] == nil {
					table[row] = map[string]string{}
					rows = append(rows, row)
				}
				toolArgs := append([]string{}, args...)
				toolArgs[1] = tool // --tool
				results, code := diffResults(t, toolArgs...)
				got := verdict(results)
				table[row][modeName(mode)] = got
				if want := wantTable[row][modeName(mode)]; got != want {
					t.Errorf("%s, webhook %s:\n got: %s\nwant: %s", row, modeName(mode), got, want)
				}
				if wantCode := map[bool]int{true: 0, false: 1}[got == statusInSync]; code != wantCode {
					t.Errorf("%s, webhook %s: exit code %d, want %d", row, modeName(mode), code, wantCode)
				}
			}
			if mode != webhookCreateOnly {
				// A Job created by a server-side apply is written once more by the first
				// re-apply of the same manifest, webhook or not (plain kubectl apply
				// --server-side does the same): the check starts after that sync.
				mustApply(t, args...)
				before := resourceVersions(t, ns)
				mustApply(t, args...)
				if after := resourceVersions(t, ns); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("%s, webhook %s: a second sync wrote the objects: resource versions %v, then %v", a.name, modeName(mode), before, after)
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| sync, diff | no webhook | webhook on %s | webhook on %s |\n|---|---|---|---|\n", webhookUpdateToo, webhookCreateOnly)
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row, table[row]["none"], table[row][webhookUpdateToo], table[row][webhookCreateOnly])
	}
	t.Log(b.String())
}

// TestArgoCDSettings checks the setting README recommends for Argo CD, Server-Side Diff, against
// the alternative: both silence the rewritten image, but only Server-Side Diff still reports a
// real change of the image in Git.
func TestArgoCDSettings(t *testing.T) {
	ns := namespace(t, "argocd-settings", webhookUpdateToo)
	mustApply(t, "--tool", toolArgoCD, "--namespace", ns, manifests)
	changed := t.TempDir()
	for _, name := range []string{"app-pod.yaml", "build-job.yaml"} {
		b, err := os.ReadFile(filepath.Join(manifests, name))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("team/app:v1"), []byte("team/app:v2"))
		if err := os.WriteFile(filepath.Join(changed, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		application   string
		same, changed string // verdicts for the applied manifests and for a new image tag in Git
	}{
		{"testdata/argocd/server-side-diff.yaml", statusInSync, "Pod drift: spec.containers[name=app].image; Job error: field is immutable"},
		{"testdata/argocd/ignore-images.yaml", statusInSync, statusInSync},
	} {
		for dir, want := range map[string]string{manifests: tc.same, changed: tc.changed} {
			results, _ := diffResults(t, "--tool", toolArgoCD, "--argocd-application", tc.application, "--namespace", ns, dir)
			if got := verdict(results); got != want {
				t.Errorf("%s, manifests %s:\n got: %s\nwant: %s", tc.application, dir, got, want)
			}
		}
	}
}

// Objects the cluster does not have are drift for every tool (Argo CD: OutOfSync; Flux: to be
// created).
func TestMissingObjects(t *testing.T) {
	ns := namespace(t, "empty", "")
	results, code := diffResults(t, "--tool", toolAll, "--namespace", ns, manifests)
	if code != 1 || len(results) != len(diffTools)*2 {
		t.Fatalf("exit code %d, %d results, want 1 and %d", code, len(results), len(diffTools)*2)
	}
	for _, r := range results {
		if r.Status != statusDrift || !r.Missing {
			t.Errorf("%s %s: %s (missing %v), want drift for a missing object", r.Tool, r.Object, r.Status, r.Missing)
		}
	}
}

// The command's usage errors exit 2 before touching the cluster.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"sync", manifests},
		{"apply", "--tool", toolAll, manifests},
		{"apply", "--tool", toolArgoCDSSD, manifests},
		{"diff", "--tool", "kubectl", manifests},
		{"diff", "--tool", toolFlux},
		{"diff", "--tool", toolFlux, "-o", "yaml", manifests},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("gitops-drift %v: exit code %d, want 2", args, code)
		}
	}
}

func modeName(mode string) string {
	if mode == "" {
		return "none"
	}
	return mode
}

// verdict summarises one tool's results for the manifest set: "in sync", or per object its
// status and drifted fields.
func verdict(results []result) string {
	var parts []string
	for _, r := range results {
		if r.Status == statusInSync {
			continue
		}
		kind := strings.Fields(r.Object)[1]
		detail := r.Error
		if i := strings.LastIndex(detail, ": "); i >= 0 {
			detail = detail[i+2:] // the API server's reason, without the object it quotes
		}
		if r.Status == statusDrift && len(r.Fields) > 0 {
			var paths []string
			for _, f := range r.Fields {
				paths = append(paths, f.Path)
			}
			sort.Strings(paths)
			detail = strings.Join(paths, ", ")
		}
		parts = append(parts, fmt.Sprintf("%s %s: %s", kind, r.Status, detail))
	}
	if len(parts) == 0 {
		return statusInSync
	}
	return strings.Join(parts, "; ")
}
