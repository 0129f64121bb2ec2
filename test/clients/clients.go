// Package clients locates the pinned real registry clients (crane, oras, regctl, skopeo) that
// test/tools/clients.sh installs, installing them on first use.
package clients

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	once  sync.Once
	paths map[string]string
	err   error
)

// Path returns the absolute path of a client binary, failing the test with the install
// command when it cannot be installed.
func Path(t testing.TB, name string) string {
	t.Helper()
	once.Do(func() { paths, err = install() })
	if err != nil {
		t.Fatalf("registry clients are not installed: %v (run: test/tools/clients.sh)", err)
	}
	p, ok := paths[name]
	if !ok {
		t.Fatalf("test/tools/clients.sh does not provide %q", name)
	}
	return p
}

// Lookup is Path for programs (the demo): it installs on first use and returns an error instead
// of failing a test.
func Lookup(name string) (string, error) {
	once.Do(func() { paths, err = install() })
	if err != nil {
		return "", err
	}
	p, ok := paths[name]
	if !ok {
		return "", fmt.Errorf("test/tools/clients.sh does not provide %q", name)
	}
	return p, nil
}

func install() (map[string]string, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(root, "test", "tools", "clients.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	found := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			found[k] = v
		}
	}
	return found, nil
}

// RepoRoot is the directory holding go.mod, found from the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
