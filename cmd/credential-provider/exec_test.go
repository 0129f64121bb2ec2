package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// The built binary, run as the kubelet runs it (pkg/credentialprovider/plugin: execPlugin):
// <bin-dir>/<provider name> with the request on stdin, the answer read from stdout, which the
// kubelet accepts only when its apiVersion is the config's and it decodes as a
// CredentialProviderResponse of that group.
func TestTheBinaryAnswersTheKubelet(t *testing.T) {
	binDir := t.TempDir()
	exe := filepath.Join(binDir, name)
	build := exec.Command("go", "build", "-o", exe, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	token := jwtWithExp(time.Now().Add(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // the kubelet's timeout
	defer cancel()
	kubelet := func(req string) (stdout, stderr string, err error) {
		var o, e bytes.Buffer
		cmd := exec.CommandContext(ctx, exe)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewBufferString(req), &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}

	stdout, stderr, err := kubelet(request(image, token))
	require.NoError(t, err, stderr)
	assert.Empty(t, stderr)
	gvk, err := json.DefaultMetaFactory.Interpret([]byte(stdout))
	require.NoError(t, err)
	assert.Equal(t, "credentialprovider.kubelet.k8s.io/v1", gvk.GroupVersion().String())

	scheme := runtime.NewScheme()
	require.NoError(t, credentialproviderv1.AddToScheme(scheme))
	obj, gvk, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode([]byte(stdout), nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "CredentialProviderResponse", gvk.Kind)
	resp, ok := obj.(*credentialproviderv1.CredentialProviderResponse)
	require.True(t, ok, "%T", obj)
	assert.Equal(t, credentialproviderv1.RegistryPluginCacheKeyType, resp.CacheKeyType)
	require.NotNil(t, resp.CacheDuration)
	assert.InDelta(t, time.Hour.Seconds(), resp.CacheDuration.Seconds(), 60)
	assert.Equal(t, map[string]credentialproviderv1.AuthConfig{"127.0.0.1:5050": {Username: "connectors-pod", Password: token}}, resp.Auth)

	// A refusal: a non-zero exit, the reason on stderr, nothing on stdout, the token nowhere.
	stdout, stderr, err = kubelet(request("harbor.example.com/team/app", token))
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, `connectors-credential-provider: image "harbor.example.com/team/app" is on harbor.example.com`)
	assert.NotContains(t, stderr, token)
}
