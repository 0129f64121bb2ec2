package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"
)

// updateCase is one testdata/updates/{pods,jobs}/*.yaml: an object admitted at CREATE into
// world.yaml (its output is the stored object), connectors then deleted from the world, and the
// update a client sends, as a JSON patch of the stored object.
type updateCase struct {
	Create json.RawMessage `json:"create"`
	// Stored is an RFC 6902 JSON patch turning the CREATE output into the object as an earlier
	// version of the webhook stored it.
	Stored json.RawMessage `json:"stored,omitempty"`
	// Remove lists connectors ("<ns>/<name>") deleted before the update.
	Remove []string `json:"remove,omitempty"`
	// Relabel replaces the labels of namespaces before the update (visibility lost).
	Relabel map[string]map[string]string `json:"relabel,omitempty"`
	// Patch is an RFC 6902 JSON patch turning the stored object into the object the update sends.
	Patch json.RawMessage `json:"patch"`
}

// TestGoldenUpdate admits an UPDATE of an object mutated at creation and compares the answer
// with the golden file beside the input; -update rewrites them. The cases pin when an update whose
// re-mutation is refused is still admitted unchanged (it changes none of what the refusal is
// about: finalizers, labels) and when it is denied (it changes an image, the connector, inject
// or status annotation).
func TestGoldenUpdate(t *testing.T) {
	base := loadInjector(t)
	world := base.Lookup.(*memoryLookup).w
	inputs, err := filepath.Glob(filepath.Join("testdata", "updates", "*", "*.yaml"))
	require.NoError(t, err)
	var cases []string
	for _, p := range inputs {
		if !strings.HasSuffix(p, ".golden.yaml") {
			cases = append(cases, p)
		}
	}
	require.NotEmpty(t, cases)
	sort.Strings(cases)
	goldens, _ := filepath.Glob(filepath.Join("testdata", "updates", "*", "*.golden.yaml"))
	for _, g := range goldens {
		assert.FileExists(t, strings.TrimSuffix(g, ".golden.yaml")+".yaml", "stale golden file without an input")
	}

	for _, input := range cases {
		kind := filepath.Base(filepath.Dir(input))
		t.Run(kind+"/"+strings.TrimSuffix(filepath.Base(input), ".yaml"), func(t *testing.T) {
			yamlIn, err := os.ReadFile(input)
			require.NoError(t, err)
			var tc updateCase
			require.NoError(t, yaml.UnmarshalStrict(yamlIn, &tc))
			raw := canonical(t, kind, mustYAMLToJSON(t, tc.Create))
			var meta struct {
				Metadata struct {
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			require.NoError(t, json.Unmarshal(raw, &meta))
			ns := meta.Metadata.Namespace
			require.NotEmpty(t, ns)

			handler := func(in *Injector) admission.Handler {
				if kind == "jobs" {
					return &JobHandler{Injector: in}
				}
				require.Equal(t, "pods", kind, "inputs live in testdata/updates/pods or testdata/updates/jobs")
				return &PodHandler{Injector: in}
			}
			created, stored := admit(t, handler(base), admissionv1.Create, raw, nil, ns)
			require.True(t, created.Allowed, "the object must be admitted at CREATE: %v", created.Result)
			require.NotEmpty(t, created.Patches, "the object must be mutated at CREATE")
			if tc.Stored != nil {
				earlier, err := jsonpatch.DecodePatch(mustYAMLToJSON(t, tc.Stored))
				require.NoError(t, err)
				stored, err = earlier.Apply(stored)
				require.NoError(t, err)
				stored = canonical(t, kind, stored)
			}

			later := world
			later.Connectors = nil
			for _, c := range world.Connectors {
				if !contains(tc.Remove, c.Namespace+"/"+c.Name) {
					later.Connectors = append(later.Connectors, c)
				}
			}
			require.Len(t, later.Connectors, len(world.Connectors)-len(tc.Remove), "remove names connectors of world.yaml")
			later.Namespaces = nil
			for _, n := range world.Namespaces {
				n = *n.DeepCopy()
				if labels, ok := tc.Relabel[n.Name]; ok {
					n.Labels = labels
				}
				later.Namespaces = append(later.Namespaces, n)
			}
			in := &Injector{Config: testConfig, Lookup: &memoryLookup{w: later}}

			patch, err := jsonpatch.DecodePatch(mustYAMLToJSON(t, tc.Patch))
			require.NoError(t, err)
			updated, err := patch.Apply(stored)
			require.NoError(t, err)
			updated = canonical(t, kind, updated)

			resp, out := admit(t, handler(in), admissionv1.Update, updated, stored, ns)
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
			require.NoError(t, err, "no golden file: run go test ./webhook -run TestGoldenUpdate -update")
			assert.Equal(t, string(want), string(gotYAML))
		})
	}
}

func mustYAMLToJSON(t *testing.T, in []byte) []byte {
	t.Helper()
	out, err := yaml.YAMLToJSON(in)
	require.NoError(t, err)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
