package proxy_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/kube"
)

// The proxy runs as its ServiceAccount with its install RBAC: it cannot read a Connector's own
// Secret, only the manager's copy in the credentials namespace, and a rotation of the Connector's
// Secret still reaches it without a restart (the manager updates the copy; the proxy's watch of
// the copies drops the connector's upstream state and its Harbor tokens).
func TestRotatedPasswordReachesTheProxy(t *testing.T) {
	ctx := context.Background()
	robot, first := harbor.AddRobot("team", "rotating", testharbor.ActionPull)
	require.NoError(t, connectorWithSecret(ctx, nsA, "rotating", harbor.URL(), robot, first, harbor.CACertPEM(), nil))
	digest, err := harbor.PutZeroBlob("team/rotating", 512)
	require.NoError(t, err)

	asProxy, err := client.New(kube.AsServiceAccount(env.Config, productNS, "connectors-proxy"), client.Options{Scheme: kube.Scheme()})
	require.NoError(t, err)
	origin := client.ObjectKey{Namespace: nsA, Name: "rotating-robot"}
	err = asProxy.Get(ctx, origin, &corev1.Secret{})
	require.True(t, apierrors.IsForbidden(err), "the proxy under test can read the Connector's own Secret: %v", err)

	token := saToken(t, nsA)
	head := func() int {
		resp := request(t, http.MethodHead, "/v2/namespaces/"+nsA+"/connectors/rotating/team/rotating/blobs/"+digest, token, nil)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, head())

	setPassword := func(password string) {
		t.Helper()
		secrets.Store(password, true)
		var s corev1.Secret
		require.NoError(t, k8s.Get(ctx, origin, &s))
		s.Data["password"] = []byte(password)
		require.NoError(t, k8s.Update(ctx, &s))
	}
	waitStatus := func(want func(int) bool, what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		last := 0
		for time.Now().Before(deadline) {
			if last = head(); want(last) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("the proxy never %s (last status %d)", what, last)
	}

	// A wrong password in the Connector's Secret: the proxy drops its cached Harbor token and
	// the registry refuses the one it fetches with the wrong password.
	setPassword("Wrong-" + first)
	waitStatus(func(code int) bool { return code != http.StatusOK }, "stopped using the old password")

	// Harbor refreshes the robot's secret (the first one is refused from now on) and the platform
	// admin puts the new one in the Connector's Secret.
	_, second := harbor.AddRobot("team", "rotating", testharbor.ActionPull)
	setPassword(second)
	fetches := harbor.TokenFetches()
	waitStatus(func(code int) bool { return code == http.StatusOK }, "used the rotated password")
	require.Greater(t, harbor.TokenFetches(), fetches, "a fresh Harbor token, fetched with the new password")
}
