//go:build e2e && day2

package e2e_test

import (
	"context"

	"github.com/alauda/harbor-connector/test/node"
)

// kubeletCredentialProvider: day 2 runs with no credential provider on the kubelet, so its
// upgrade and failure scenarios show the per-node mode exactly as before the plugin existed.
func kubeletCredentialProvider(context.Context, string) (*node.CredentialProvider, error) {
	return nil, nil
}
