package node

import (
	"fmt"
	"os"
	"path/filepath"
)

// CredentialProvider is a kubelet image credential provider exec plugin (KEP-4412) and its
// CredentialProviderConfig, installed the way node bootstrap installs one: the binary in the
// directory --image-credential-provider-bin-dir names, under the provider's name, and the
// config in the file --image-credential-provider-config names. The kubelet reads both only when
// it starts.
type CredentialProvider struct {
	Name   string // the provider's name in Config, and so the binary's file name
	Binary string // the plugin on the host
	Config string // CredentialProviderConfig YAML
}

// install copies the plugin under dir and returns the kubelet's flags for it.
func (cp *CredentialProvider) install(dir string) ([]string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(cp.Binary)
	if err != nil {
		return nil, fmt.Errorf("the credential provider plugin: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bin, cp.Name), data, 0o755); err != nil {
		return nil, err
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(cp.Config), 0o644); err != nil {
		return nil, err
	}
	return []string{"--image-credential-provider-config=" + config, "--image-credential-provider-bin-dir=" + bin}, nil
}
