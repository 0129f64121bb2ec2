package kube

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/alauda/harbor-connector/test/clients"
)

// TrustManagerBinary is the trust-manager command at TRUST_MANAGER_VERSION, built on first use
// by test/tools/trust-manager.sh into the project cache (a few minutes cold, nothing after).
func TrustManagerBinary() (string, error) {
	root, err := clients.RepoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "test", "tools", "trust-manager.sh")
	cmd := exec.Command(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s (run it by hand to see the build)", script, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}
