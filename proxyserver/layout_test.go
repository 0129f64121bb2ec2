package proxyserver

import (
	"encoding/json"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Each file of the package is one concern, and concerns depend on each other one way: a file
// that uses a name declared in another (a type, function, method, field or constant) depends on
// it, and no chain of such uses leads back. A file that needs a file that needs it has two
// concerns tangled; split them.
func TestFilesDependOneWay(t *testing.T) {
	graph := fileGraph(t, ".")
	require.NotEmpty(t, graph)
	for _, cycle := range cycles(graph) {
		t.Errorf("files depend on each other in a loop: %s", strings.Join(cycle, " → "))
	}
}

// fileGraph type-checks the package's non-test files (imports from the build cache's export
// data) and returns, for each file, the files whose declarations it uses.
func fileGraph(t *testing.T, dir string) map[string]map[string]bool {
	t.Helper()
	exports := exportData(t, dir)
	fset := token.NewFileSet()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		files = append(files, f)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) { return os.Open(exports[path]) })
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
	pkg, err := (&types.Config{Importer: imp}).Check("proxyserver", fset, files, info)
	require.NoError(t, err)
	graph := map[string]map[string]bool{}
	for _, f := range files {
		graph[filepath.Base(fset.Position(f.Pos()).Filename)] = map[string]bool{}
	}
	for ident, obj := range info.Uses {
		if obj == nil || obj.Pkg() != pkg || obj.Parent() != nil && obj.Parent() != pkg.Scope() {
			continue // other packages, and local variables
		}
		from := filepath.Base(fset.Position(ident.Pos()).Filename)
		to := filepath.Base(fset.Position(obj.Pos()).Filename)
		if from != to {
			graph[from][to] = true
		}
	}
	return graph
}

// exportData maps each dependency's import path to its export data file.
func exportData(t *testing.T, dir string) map[string]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-export", "-deps", "-json=ImportPath,Export", ".")
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err)
	exports := map[string]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct{ ImportPath, Export string }
		require.NoError(t, dec.Decode(&p))
		exports[p.ImportPath] = p.Export
	}
	return exports
}

// cycles returns one loop per strongly connected component of more than one file (Tarjan).
func cycles(graph map[string]map[string]bool) [][]string {
	index, low, onStack := map[string]int{}, map[string]int{}, map[string]bool{}
	var stack []string
	var out [][]string
	var visit func(string)
	visit = func(v string) {
		index[v], low[v] = len(index), len(index)
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range sortedKeys(graph[v]) {
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var scc []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				scc = append(scc, w)
				if w == v {
					break
				}
			}
			if len(scc) > 1 {
				sort.Strings(scc)
				out = append(out, scc)
			}
		}
	}
	for _, v := range sortedKeys(graph) {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
