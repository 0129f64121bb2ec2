package webhook

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// world is the cluster every golden case is admitted into (testdata/world.yaml).
type world struct {
	Namespaces []corev1.Namespace   `json:"namespaces"`
	Connectors []v1alpha1.Connector `json:"connectors"`
}

// memoryLookup serves the world from memory, with the API server's NotFound errors.
type memoryLookup struct{ w world }

func (m *memoryLookup) Connector(_ context.Context, ref policies.ConnectorRef) (*v1alpha1.Connector, error) {
	for i := range m.w.Connectors {
		c := &m.w.Connectors[i]
		if c.Namespace == ref.Namespace && c.Name == ref.Name {
			return c.DeepCopy(), nil
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "connectors.alauda.io", Resource: "connectors"}, ref.Name)
}

func (m *memoryLookup) Namespace(_ context.Context, name string) (policies.Namespace, error) {
	for _, ns := range m.w.Namespaces {
		if ns.Name == name {
			return policies.Namespace{Name: ns.Name, Labels: ns.Labels}, nil
		}
	}
	return policies.Namespace{}, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, name)
}

// testConfig is the manager configuration the goldens are written for: the webhook's defaults,
// with the NO_PROXY entries a manager adds (its API server's host) or is given (--no-proxy).
var testConfig = func() policies.InjectionConfig {
	c := DefaultOptions().Injection
	c.NoProxy = []string{"10.96.0.1", "10.96.0.0/12"}
	return c
}()

func loadInjector(t *testing.T) *Injector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "world.yaml"))
	require.NoError(t, err)
	var w world
	require.NoError(t, yaml.UnmarshalStrict(raw, &w))
	return &Injector{Config: testConfig, Lookup: &memoryLookup{w: w}}
}

// goldenResult is what a golden file records for one admission.
type goldenResult struct {
	Allowed  bool            `json:"allowed"`
	Message  string          `json:"message,omitempty"`
	Warnings []string        `json:"warnings,omitempty"`
	Object   json.RawMessage `json:"object,omitempty"`
}

func admit(t *testing.T, h admission.Handler, op admissionv1.Operation, raw, oldRaw []byte, namespace string) (admission.Response, []byte) {
	t.Helper()
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "golden", Operation: op, Namespace: namespace,
		Object: runtime.RawExtension{Raw: raw}, OldObject: runtime.RawExtension{Raw: oldRaw},
	}}
	resp := h.Handle(context.Background(), req)
	if !resp.Allowed || len(resp.Patches) == 0 {
		return resp, raw
	}
	patch, err := json.Marshal(resp.Patches)
	require.NoError(t, err)
	decoded, err := jsonpatch.DecodePatch(patch)
	require.NoError(t, err)
	patched, err := decoded.Apply(raw)
	require.NoError(t, err, "the patch must apply to the object as received")
	return resp, patched
}

// TestGolden admits every testdata/{pods,jobs}/*.yaml (not *.golden.yaml) and compares with
// the golden file beside it; -update rewrites them. Every allowed case is admitted again on its
// own output (an empty patch is expected), and every mutated Job's template becomes a Pod, as the
// job controller would create it, which must also get an empty patch.
func TestGolden(t *testing.T) {
	in := loadInjector(t)
	handlers := map[string]admission.Handler{"pods": &PodHandler{Injector: in}, "jobs": &JobHandler{Injector: in}}
	inputs, err := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	require.NoError(t, err)
	var cases []string
	for _, p := range inputs {
		if !strings.HasSuffix(p, ".golden.yaml") && filepath.Base(p) != "world.yaml" {
			cases = append(cases, p)
		}
	}
	require.NotEmpty(t, cases)
	sort.Strings(cases)
	goldens, _ := filepath.Glob(filepath.Join("testdata", "*", "*.golden.yaml"))
	for _, g := range goldens {
		assert.FileExists(t, strings.TrimSuffix(g, ".golden.yaml")+".yaml", "stale golden file without an input")
	}

	for _, input := range cases {
		kind := filepath.Base(filepath.Dir(input))
		t.Run(kind+"/"+strings.TrimSuffix(filepath.Base(input), ".yaml"), func(t *testing.T) {
			h := handlers[kind]
			require.NotNil(t, h, "inputs live in testdata/pods or testdata/jobs")
			yamlIn, err := os.ReadFile(input)
			require.NoError(t, err)
			raw := canonical(t, kind, yamlIn)
			var meta struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			require.NoError(t, json.Unmarshal(raw, &meta))
			ns := meta.Metadata.Namespace
			require.NotEmpty(t, ns, "give every input a metadata.namespace: it is the request's namespace")

			resp, out := admit(t, h, admissionv1.Create, raw, nil, ns)
			got := goldenResult{Allowed: resp.Allowed, Warnings: resp.Warnings}
			if resp.Result != nil {
				got.Message = resp.Result.Message
			}
			if resp.Allowed {
				got.Object = out
			}
			gotYAML, err := yaml.Marshal(got)
			require.NoError(t, err)
			goldenPath := strings.TrimSuffix(input, ".yaml") + ".golden.yaml"
			if *update {
				require.NoError(t, os.WriteFile(goldenPath, gotYAML, 0o644))
			}
			want, err := os.ReadFile(goldenPath)
			require.NoError(t, err, "no golden file: run go test ./webhook -run TestGolden -update")
			assert.Equal(t, string(want), string(gotYAML))
			if !resp.Allowed {
				return
			}

			t.Run("idempotent", func(t *testing.T) {
				again, _ := admit(t, h, admissionv1.Create, out, nil, ns)
				assert.True(t, again.Allowed)
				assert.Empty(t, again.Patches, "a second pass must not change anything")
				// A re-apply of the original manifest arrives as an UPDATE of the mutated object:
				// it must come out exactly as the live object.
				reapplied, result := admit(t, h, admissionv1.Update, raw, out, ns)
				assert.True(t, reapplied.Allowed)
				if len(resp.Patches) > 0 {
					assert.JSONEq(t, string(out), string(result), "re-applying the original manifest must give the live object")
				}
			})
			if kind == "jobs" && len(resp.Patches) > 0 {
				t.Run("pod-from-template", func(t *testing.T) {
					var job batchv1.Job
					require.NoError(t, json.Unmarshal(out, &job))
					pod := corev1.Pod{
						TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
						ObjectMeta: *job.Spec.Template.ObjectMeta.DeepCopy(),
						Spec:       *job.Spec.Template.Spec.DeepCopy(),
					}
					pod.GenerateName = job.Name + "-"
					podRaw, err := json.Marshal(&pod)
					require.NoError(t, err)
					podResp, _ := admit(t, handlers["pods"], admissionv1.Create, podRaw, nil, ns)
					assert.True(t, podResp.Allowed)
					assert.Empty(t, podResp.Patches, "a Pod from a mutated Job template needs no second mutation")
				})
			}
		})
	}
}

// canonical serialises an input as the API server would put it in an AdmissionRequest: decoded
// into its Go type and marshalled back (creationTimestamp: null, empty structs and all).
func canonical(t *testing.T, kind string, in []byte) []byte {
	t.Helper()
	var obj any = &corev1.Pod{}
	if kind == "jobs" {
		obj = &batchv1.Job{}
	}
	require.NoError(t, yaml.UnmarshalStrict(in, obj))
	raw, err := json.Marshal(obj)
	require.NoError(t, err)
	return raw
}
