// Package docs_test keeps README.md's reference tables true: every key, condition reason, flag
// and metric the code defines must be documented, so the docs cannot rot. README.md and docs/
// link only to files inside the repository.
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/clients"
)

func readme(t *testing.T) (string, string) {
	t.Helper()
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	return string(b), root
}

// stringConsts returns the string constants of a Go file whose names start with prefix.
func stringConsts(t *testing.T, path, prefix string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	require.NoError(t, err)
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range spec.Names {
			if !strings.HasPrefix(name.Name, prefix) || i >= len(spec.Values) {
				continue
			}
			if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				out[name.Name] = v
			}
		}
		return true
	})
	require.NotEmpty(t, out, "no %s* constants in %s", prefix, path)
	return out
}

func TestREADMEDocumentsEveryWorkloadKey(t *testing.T) {
	doc, root := readme(t)
	for _, prefix := range []string{"Label", "Annotation"} {
		for name, key := range stringConsts(t, filepath.Join(root, "policies", "keys.go"), prefix) {
			if name == "AnnotationMirrorPod" || name == "LabelProject" || name == "LabelInnerNamespace" {
				continue // not ours; the visibility section names the project labels
			}
			assert.True(t, strings.Contains(doc, "`"+key+"`"), "README.md must document %s (%s)", name, key)
		}
	}
}

func TestREADMEDocumentsEveryConditionReason(t *testing.T) {
	doc, root := readme(t)
	path := filepath.Join(root, "api", "v1alpha1", "conditions.go")
	for name, reason := range stringConsts(t, path, "Reason") {
		if name == "ReasonReady" || name == "ReasonSecretFound" || name == "ReasonAlive" || name == "ReasonAuthenticated" ||
			name == "ReasonProxyAvailable" || name == "ReasonSecretOptional" || name == "ReasonAnonymous" {
			continue // success reasons need no troubleshooting row
		}
		assert.True(t, strings.Contains(doc, "`"+reason+"`"), "README.md's conditions table must explain %s", name)
	}
	for name, typ := range stringConsts(t, path, "Condition") {
		assert.True(t, strings.Contains(doc, "`"+typ+"`"), "README.md must name condition %s", name)
	}
}

var metricName = regexp.MustCompile(`Name:\s+"([a-z_]+)"`)

func TestREADMEDocumentsEveryMetric(t *testing.T) {
	doc, root := readme(t)
	var files []string
	for _, dir := range []string{"controller", "webhook", "proxyserver"} {
		require.NoError(t, filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				files = append(files, p)
			}
			return err
		}))
	}
	require.NotEmpty(t, files)
	for _, f := range files {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range metricName.FindAllStringSubmatch(string(src), -1) {
			assert.True(t, strings.Contains(doc, "`"+m[1]+"`"), "README.md's metrics table must list %s (%s)", m[1], f)
		}
	}
}

var flagLine = regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]+)`)

func TestREADMEDocumentsEveryFlag(t *testing.T) {
	for _, binary := range []string{"manager", "proxy", "csi-driver", "credential-provider"} {
		t.Run(binary, func(t *testing.T) { checkFlags(t, binary) })
	}
}

func checkFlags(t *testing.T, binary string) {
	doc, root := readme(t)
	cmd := exec.Command("go", "run", "./cmd/"+binary, "-h")
	cmd.Dir = root
	out, _ := cmd.CombinedOutput() // -h exits 0 or 2 depending on the flag package; the text is what matters
	flags := flagLine.FindAllStringSubmatch(string(out), -1)
	require.NotEmpty(t, flags, "no flags in the %s's help:\n%s", binary, out)
	for _, f := range flags {
		if strings.HasPrefix(f[1], "zap-") {
			continue // controller-runtime's logging flags, documented upstream
		}
		assert.True(t, strings.Contains(doc, "`--"+f[1]+"`"), "README.md's %s flag table must list --%s", binary, f[1])
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// The repository stands alone: README.md and docs/*.md link only to files inside it that exist
// (a user clones only this repository), and never mention the workspace's ../shared folder.
func TestDocsLinkOnlyInsideTheRepository(t *testing.T) {
	_, root := readme(t)
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, docs, "docs/*.md: README.md links to docs/architecture.md")
	for _, doc := range append([]string{filepath.Join(root, "README.md")}, docs...) {
		b, err := os.ReadFile(doc)
		require.NoError(t, err)
		name, _ := filepath.Rel(root, doc)
		for i, line := range strings.Split(string(b), "\n") {
			assert.False(t, strings.Contains(line, "../shared"), "%s:%d names ../shared, a folder outside the repository: %s", name, i+1, line)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue // a web page, not a file
			}
			target, _, _ = strings.Cut(target, "#")
			if target == "" {
				continue // an anchor in the same file
			}
			abs := filepath.Join(filepath.Dir(doc), filepath.FromSlash(target))
			rel, err := filepath.Rel(root, abs)
			if !assert.NoError(t, err) || !assert.False(t, rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)),
				"%s links to %s, outside the repository", name, m[1]) {
				continue
			}
			_, err = os.Stat(abs)
			assert.NoError(t, err, "%s links to %s, which does not exist", name, m[1])
		}
	}
}

// docCitation is a comment's pointer into the docs: README "Section" or docs/<file>.md "Section",
// optionally followed by more sections (, "Other").
var docCitation = regexp.MustCompile(`(README|docs/[\w.-]+\.md) ("[^"]+"(?:, "[^"]+")*)`)

// Code and manifests cite documents inside the repository only, by sections that exist, so a
// newcomer following a comment lands somewhere.
func TestCodeCitesOnlyDocsThatExist(t *testing.T) {
	_, root := readme(t)
	out, err := exec.Command("git", "-C", root, "ls-files", "*.go", "*.yaml", "*.sh", "Makefile").Output()
	require.NoError(t, err)
	headings := map[string][]string{}
	headingsOf := func(doc string) []string {
		if h, ok := headings[doc]; ok {
			return h
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(doc)))
		if err != nil {
			headings[doc] = nil
			return nil
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "#") {
				headings[doc] = append(headings[doc], strings.TrimSpace(strings.TrimLeft(line, "#")))
			}
		}
		return headings[doc]
	}
	checked := 0
	for _, file := range strings.Fields(string(out)) {
		if strings.Contains(file, "/vendor/") || strings.HasPrefix(file, "test/docs/") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, file))
		require.NoError(t, err)
		for i, line := range strings.Split(string(b), "\n") {
			for _, gone := range []string{"ARCHITECTURE.md", "../shared", "proxy-anchors"} {
				assert.NotContains(t, line, gone, "%s:%d cites a document outside the repository", file, i+1)
			}
			for _, m := range docCitation.FindAllStringSubmatch(line, -1) {
				doc := m[1]
				if doc == "README" {
					doc = "README.md"
				}
				for _, section := range regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(m[2], -1) {
					checked++
					found := false
					for _, h := range headingsOf(doc) {
						found = found || strings.HasPrefix(h, section[1])
					}
					assert.True(t, found, "%s:%d cites %s %q, which has no such section", file, i+1, doc, section[1])
				}
			}
		}
	}
	assert.NotZero(t, checked, "no citation found: the pattern is broken")
}

// README's Layout names every folder of test/ and every subpackage of proxyserver/, and
// docs/architecture.md every file of proxyserver/, so neither goes stale as code moves.
func TestLayoutNamesEveryFolder(t *testing.T) {
	doc, root := readme(t)
	start := strings.Index(doc, "## Layout")
	require.GreaterOrEqual(t, start, 0, "README.md has a Layout section")
	layout := doc[start:]
	for _, parent := range []string{"test", "proxyserver"} {
		entries, err := os.ReadDir(filepath.Join(root, parent))
		require.NoError(t, err)
		for _, e := range entries {
			if e.IsDir() && e.Name() != "testdata" {
				assert.Contains(t, layout, "`"+e.Name()+"/`", "README's Layout does not name %s/%s/", parent, e.Name())
			}
		}
	}
	arch, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	require.NoError(t, err)
	files, err := filepath.Glob(filepath.Join(root, "proxyserver", "*.go"))
	require.NoError(t, err)
	for _, f := range files {
		if name := filepath.Base(f); !strings.HasSuffix(name, "_test.go") {
			assert.Contains(t, string(arch), "`"+name+"`", "docs/architecture.md does not name proxyserver/%s", name)
		}
	}
}
