package csi

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

type memLookup struct {
	connectors map[policies.ConnectorRef]*v1alpha1.Connector
	namespaces map[string]policies.Namespace
}

func (m memLookup) Connector(_ context.Context, ref policies.ConnectorRef) (*v1alpha1.Connector, error) {
	if c, ok := m.connectors[ref]; ok {
		return c, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "connectors"}, ref.Name)
}

func (m memLookup) Namespace(_ context.Context, name string) (policies.Namespace, error) {
	if ns, ok := m.namespaces[name]; ok {
		return ns, nil
	}
	return policies.Namespace{}, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, name)
}

func driver() *Driver {
	a := policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}
	return &Driver{
		NodeID: "node-1", Audience: "connectors-proxy",
		Lookup: memLookup{
			connectors: map[policies.ConnectorRef]*v1alpha1.Connector{a: {
				ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "harbor"},
				Status:     v1alpha1.ConnectorStatus{Proxy: &v1alpha1.ProxyStatus{HTTPAddress: &v1alpha1.HTTPAddress{URL: "https://proxy/namespaces/team-a/connectors/harbor"}}},
			}},
			namespaces: map[string]policies.Namespace{"team-a": {Name: "team-a"}, "team-b": {Name: "team-b"}},
		},
		ForwardProxy: "http://proxy:3128", ForwardProxyTLS: "https://proxy:3129", ReverseHost: "proxy",
		CABundle: func() ([]byte, error) { return testBundle, nil },
	}
}

// publish publishes as a kubelet does for the CSIDriver in config/csi
// (serviceAccountTokenInSecrets: true): the token in the request's secrets.
func publish(t *testing.T, d *Driver, target, podNS, token string) error {
	t.Helper()
	_, err := d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		TargetPath: target, Readonly: true,
		VolumeContext: map[string]string{
			"connectors": "team-a/harbor", ctxPodNamespace: podNS, ctxPodName: "build-x", ctxEphemeral: "true",
		},
		Secrets: map[string]string{ctxTokens: tokensJSON(token)},
	})
	return err
}

func tokensJSON(token string) string {
	return `{"connectors-proxy":{"token":"` + token + `","expirationTimestamp":"2026-01-01T00:00:00Z"}}`
}

// A kubelet without serviceAccountTokenInSecrets (the feature gate off) passes the token in the
// volume context; the driver reads it there too, and prefers the secrets when both are set.
func TestPublishReadsTheTokenFromSecretsOrVolumeContext(t *testing.T) {
	d := driver()
	vc := map[string]string{"connectors": "team-a/harbor", ctxPodNamespace: "team-a", ctxPodName: "build-x", ctxEphemeral: "true",
		ctxTokens: tokensJSON("context-token")}
	target := filepath.Join(t.TempDir(), "mount")
	_, err := d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{TargetPath: target, VolumeContext: vc})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(target, FileToken))
	require.NoError(t, err)
	assert.Equal(t, "context-token", string(b))

	_, err = d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{TargetPath: target, VolumeContext: vc,
		Secrets: map[string]string{ctxTokens: tokensJSON("secret-token")}})
	require.NoError(t, err)
	b, err = os.ReadFile(filepath.Join(target, FileToken))
	require.NoError(t, err)
	assert.Equal(t, "secret-token", string(b))
}

// The kubelet republishes with a fresh token before the old one expires: the files follow.
func TestPublishTwiceRerendersWithTheNewToken(t *testing.T) {
	d := driver()
	target := filepath.Join(t.TempDir(), "mount")
	require.NoError(t, publish(t, d, target, "team-a", "first-token"))
	b, err := os.ReadFile(filepath.Join(target, FileToken))
	require.NoError(t, err)
	assert.Equal(t, "first-token", string(b))
	require.NoError(t, publish(t, d, target, "team-a", "second-token"))
	for _, f := range []string{FileToken, FileHTTPSProxy, policies.FileDockerConfig} {
		b, err := os.ReadFile(filepath.Join(target, f))
		require.NoError(t, err, f)
		assert.NotContains(t, string(b), "first-token", f)
	}
	b, _ = os.ReadFile(filepath.Join(target, FileToken))
	assert.Equal(t, "second-token", string(b))

	_, err = d.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{TargetPath: target})
	require.NoError(t, err)
	_, err = os.Stat(target)
	assert.True(t, os.IsNotExist(err))
}

// A pod may not mount another namespace's connector; the message names both.
func TestPublishRefusesAnInvisibleConnector(t *testing.T) {
	err := publish(t, driver(), filepath.Join(t.TempDir(), "m"), "team-b", "tok")
	require.Error(t, err)
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	assert.Contains(t, err.Error(), "connector team-a/harbor is not visible from namespace team-b")
}

func TestPublishNeedsTheTokenAndEphemeral(t *testing.T) {
	d := driver()
	_, err := d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{TargetPath: t.TempDir(),
		VolumeContext: map[string]string{"connectors": "team-a/harbor", ctxPodNamespace: "team-a", ctxEphemeral: "true"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tokenRequests")
	_, err = d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{TargetPath: t.TempDir(),
		VolumeContext: map[string]string{"connectors": "team-a/harbor", ctxPodNamespace: "team-a"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "inline ephemeral")
}

// Each volume is its own tmpfs, so the token never reaches the node's disk; a republish writes
// into the same mount, and unpublish unmounts it.
func TestPublishMountsATmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; CI runs as root")
	}
	d := driver()
	d.Tmpfs = true
	target := filepath.Join(t.TempDir(), "mount")
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	require.NoError(t, publish(t, d, target, "team-a", "first-token"))
	assert.Equal(t, []string{"tmpfs"}, fsTypes(t, target), "one tmpfs on the target")
	require.NoError(t, publish(t, d, target, "team-a", "second-token"))
	assert.Equal(t, []string{"tmpfs"}, fsTypes(t, target), "a republish reuses the mount")
	b, err := os.ReadFile(filepath.Join(target, FileToken))
	require.NoError(t, err)
	assert.Equal(t, "second-token", string(b))

	_, err = d.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{TargetPath: target})
	require.NoError(t, err)
	assert.Empty(t, fsTypes(t, target), "unmounted")
	_, err = os.Stat(target)
	assert.True(t, os.IsNotExist(err))
}

// fsTypes lists the file-system types mounted exactly at dir, from /proc/self/mountinfo.
func fsTypes(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var types []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != dir {
			continue
		}
		for i, field := range f {
			if field == "-" && i+1 < len(f) {
				types = append(types, f[i+1])
			}
		}
	}
	return types
}
