package node

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// HostBinaryFiles are a dynamically linked host program (Debian's buildah, curl, runc) with the
// shared libraries ldd resolves for it, at their host paths, so it runs in an image that has no
// libc of its own. Each program goes where its File says; the libraries keep their host paths,
// where the loader looks for them.
func HostBinaryFiles(ctx context.Context, programs ...File) ([]File, error) {
	seen := map[string]bool{}
	var files []File
	add := func(f File) {
		if !seen[f.ImagePath] {
			seen[f.ImagePath] = true
			files = append(files, f)
		}
	}
	for _, prog := range programs {
		out, err := exec.CommandContext(ctx, "ldd", prog.HostPath).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %v: %s", prog.HostPath, err, out)
		}
		libs, err := lddPaths(string(out))
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", prog.HostPath, err)
		}
		add(prog)
		for _, lib := range libs {
			add(File{HostPath: lib, ImagePath: lib})
		}
	}
	return files, nil
}

// lddPaths reads ldd's lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", the
// loader as "/lib64/ld-linux-x86-64.so.2 (0x...)", and the kernel's vDSO, which has no file.
// A library ldd could not find fails here rather than in the container.
func lddPaths(out string) ([]string, error) {
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "linux-vdso"), strings.HasPrefix(line, "statically linked"):
			continue
		case strings.Contains(line, "=> not found"):
			return nil, fmt.Errorf("missing library: %s", line)
		}
		field := line
		if _, after, ok := strings.Cut(line, "=> "); ok {
			field = after
		}
		p, _, _ := strings.Cut(field, " ")
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("unexpected ldd line %q", line)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
