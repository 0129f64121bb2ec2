package kube

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
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

// TrustNamespace is where trust-manager reads Bundle sources, as the install asks
// (README "Install on a cluster": --trust-namespace=connectors-system).
const TrustNamespace = "connectors-system"

// TrustManagerArgs are trust-manager's flags for a test: the install's trust namespace, one
// replica, its webhook served at webhookHost:webhookPort with the certificate in certDir, its
// readiness on readyPort (127.0.0.1), no metrics.
func TrustManagerArgs(kubeconfig, webhookHost string, webhookPort int, certDir string, readyPort int) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--trust-namespace=" + TrustNamespace,
		"--leader-elect=false",
		"--webhook-host=" + webhookHost,
		"--webhook-port=" + strconv.Itoa(webhookPort),
		"--webhook-certificate-dir=" + certDir,
		"--readiness-probe-port=" + strconv.Itoa(readyPort),
		"--metrics-port=0",
		"--log-level=2",
	}
}
