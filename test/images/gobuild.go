package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// compile builds every Binary and Tool for one platform into dir/<os>-<arch> and returns that
// folder; each file is named after its package's folder (builtPath). One `go build` per platform lets the go command build the three in parallel, and the
// build cache serves every package a previous build (or `make build`) compiled with the same
// flags; only the links run again.
//
// The flags are what makes the binaries static and reproducible: CGO_ENABLED=0 (no libc),
// -trimpath (no build paths), -ldflags "-s -w -buildid=" (no symbol table, DWARF or build ID,
// which hashes the inputs and so differs between toolchain builds), -mod=readonly (go.mod and
// go.sum are the truth; with a warm module cache this works with GOPROXY=off). GOFLAGS and
// GOPROXY are the caller's.
func compile(ctx context.Context, root, dir string, p v1.Platform) (string, error) {
	out := filepath.Join(dir, p.OS+"-"+p.Architecture)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	args := []string{"build", "-mod=readonly", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out + string(filepath.Separator)}
	for _, b := range Binaries {
		args = append(args, b.Package)
		for _, t := range b.Tools {
			args = append(args, t.Package)
		}
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture,
		// The baseline of each architecture, so the binaries run on every CPU the platform
		// names (a GOAMD64=v3 in the caller's environment would not).
		"GOAMD64=v1", "GOARM64=v8.0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s (GOOS=%s GOARCH=%s) in %s: %v\n%s", strings.Join(args, " "), p.OS, p.Architecture, root, err, stderr.Bytes())
	}
	return out, nil
}

// builtPath is where compile left a package's binary in a platform's folder: go build -o <dir>/
// names it after the package's last element.
func builtPath(dir, pkg string) string { return filepath.Join(dir, path.Base(pkg)) }
