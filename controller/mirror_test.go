package controller_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/controller"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
)

func mirrorKey(c *v1alpha1.Connector) client.ObjectKey {
	return access.MirrorKey(credentialsNS, policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name})
}

// waitCopy polls the Connector's copy until ok accepts it, and returns it.
func waitCopy(t *testing.T, c *v1alpha1.Connector, what string, ok func(*corev1.Secret) bool) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	last := "no copy"
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		err := k8s.Get(context.Background(), mirrorKey(c), &s)
		switch {
		case err == nil && ok(&s):
			return &s
		case err == nil:
			last = fmt.Sprintf("labels %v, annotations %v, keys %v", s.Labels, s.Annotations, keys(s.Data))
		case !apierrors.IsNotFound(err):
			require.NoError(t, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the copy of %s/%s's credentials never became %s; last: %s", c.Namespace, c.Name, what, last)
	return nil
}

func waitNoCopy(t *testing.T, key client.ObjectKey) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		err := k8s.Get(context.Background(), key, &corev1.Secret{})
		if apierrors.IsNotFound(err) {
			return
		}
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("Secret %s was never deleted", key)
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func current(t *testing.T, c *v1alpha1.Connector) *v1alpha1.Connector {
	t.Helper()
	var got v1alpha1.Connector
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKeyFromObject(c), &got))
	return &got
}

// The manager keeps a copy of each Connector's credentials in the product namespace: Opaque,
// named from the Connector, labelled and annotated with it, holding username, password and the
// CA's PEM. access.LoadMirroredCredentials reads back what access.LoadCredentials reads from the
// Connector's own Secrets.
func TestCredentialsAreCopiedToTheProductNamespace(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	basicSecret(t, ns, "robot", "robot$team+ci", "Copy-pass-"+ns)
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ca"}, Data: map[string][]byte{
		"ca.crt": harborTLS.CACertPEM(), "ignored.txt": []byte("not a certificate key")}}
	require.NoError(t, k8s.Create(ctx, ca))
	c := newConnector(t, ns, "harbor", "harbor", harborTLS.URL(), "robot")
	c.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: "ca"}
	create(t, c)

	s := waitCopy(t, c, "written", func(s *corev1.Secret) bool { return len(s.Data) > 0 })
	assert.Equal(t, credentialsNS, s.Namespace)
	assert.Regexp(t, `^connector-[0-9a-f]{20}$`, s.Name)
	assert.Equal(t, corev1.SecretTypeOpaque, s.Type)
	assert.Equal(t, "true", s.Labels[access.LabelMirror])
	assert.Equal(t, ns, s.Labels[access.LabelMirrorNamespace])
	assert.Equal(t, ns+"/harbor", s.Annotations[access.AnnotationMirrorOf])
	assert.Equal(t, string(c.UID), s.Annotations[access.AnnotationMirrorUID])
	assert.Equal(t, strconv.FormatInt(c.Generation, 10), s.Annotations[access.AnnotationMirrorGeneration])
	assert.Empty(t, s.OwnerReferences, "a Connector in another namespace cannot own the copy")
	assert.ElementsMatch(t, []string{"username", "password", "ca.crt"}, keys(s.Data))
	assert.Equal(t, "robot$team+ci", string(s.Data["username"]))
	assert.Equal(t, "Copy-pass-"+ns, string(s.Data["password"]))
	certs, err := policies.PEMCertificates(s.Data["ca.crt"])
	require.NoError(t, err)
	want, err := policies.PEMCertificates(harborTLS.CACertPEM())
	require.NoError(t, err)
	require.Len(t, certs, len(want))
	for i := range want {
		assert.True(t, want[i].Equal(certs[i]), "ca.crt holds the CA Secret's certificates")
	}

	got, err := access.LoadMirroredCredentials(ctx, k8s, credentialsNS, current(t, c))
	require.NoError(t, err)
	orig, err := access.LoadCredentials(ctx, k8s, c)
	require.NoError(t, err)
	assert.Equal(t, *orig.Basic, *got.Basic)
	assert.Equal(t, []client.ObjectKey{client.ObjectKeyFromObject(s)}, got.Secrets, "a watcher drops what was built from the copy when the copy changes")
	caCert := want[0]
	_, err = caCert.Verify(x509.VerifyOptions{Roots: got.RootCAs})
	assert.NoError(t, err, "the loaded RootCAs trust the Connector's CA")

	// The proxy never uses a copy made for another incarnation or spec of the Connector.
	stale := current(t, c)
	stale.Generation++
	_, err = access.LoadMirroredCredentials(ctx, k8s, credentialsNS, stale)
	assertNotCopied(t, err, c)
	stale = current(t, c)
	stale.UID = "another-uid"
	_, err = access.LoadMirroredCredentials(ctx, k8s, credentialsNS, stale)
	assertNotCopied(t, err, c)
}

func assertNotCopied(t *testing.T, err error, c *v1alpha1.Connector) {
	t.Helper()
	var problem *policies.SecretProblem
	require.ErrorAs(t, err, &problem)
	assert.Equal(t, access.ReasonCredentialsNotCopied, problem.Reason)
	assert.Equal(t, "the manager has not copied connector "+c.Namespace+"/"+c.Name+"'s credentials yet; see the Connector's conditions", problem.Message)
	assert.NoError(t, problem.Err)
}

// A rotated password, a Secret that goes missing and comes back, and a spec that names another
// Secret all reach the copy; a missing Secret leaves a copy without data that says why.
func TestCopyFollowsSecretsAndSpec(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	robot := basicSecret(t, ns, "robot", "robot$team+ci", "First-pass-"+ns)
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "robot"))
	waitCopy(t, c, "the first password", func(s *corev1.Secret) bool { return string(s.Data["password"]) == "First-pass-"+ns })

	secretsUsed.Store("Second-pass-"+ns, true)
	robot.StringData = map[string]string{"password": "Second-pass-" + ns}
	require.NoError(t, k8s.Update(ctx, robot))
	waitCopy(t, c, "the rotated password", func(s *corev1.Secret) bool { return string(s.Data["password"]) == "Second-pass-"+ns })

	require.NoError(t, k8s.Delete(ctx, robot))
	s := waitCopy(t, c, "a problem record", func(s *corev1.Secret) bool {
		return s.Annotations[access.AnnotationMirrorProblemReason] == v1alpha1.ReasonSecretNotFound
	})
	assert.Empty(t, s.Data, "a deleted Secret's credentials are no longer in the copy")
	assert.Contains(t, s.Annotations[access.AnnotationMirrorProblem], ns+"/robot")
	_, err := access.LoadMirroredCredentials(ctx, k8s, credentialsNS, current(t, c))
	var problem *policies.SecretProblem
	require.ErrorAs(t, err, &problem)
	assert.Equal(t, v1alpha1.ReasonSecretNotFound, problem.Reason)

	basicSecret(t, ns, "robot", "robot$team+ci", "Third-pass-"+ns)
	waitCopy(t, c, "restored", func(s *corev1.Secret) bool {
		return string(s.Data["password"]) == "Third-pass-"+ns && s.Annotations[access.AnnotationMirrorProblemReason] == ""
	})

	basicSecret(t, ns, "other", "robot$team+other", "Other-pass-"+ns)
	live := current(t, c)
	live.Spec.Auth.SecretRef.Name = "other"
	require.NoError(t, k8s.Update(ctx, live))
	waitCopy(t, c, "the new Secret's, for the new generation", func(s *corev1.Secret) bool {
		return string(s.Data["username"]) == "robot$team+other" && s.Annotations[access.AnnotationMirrorGeneration] == strconv.FormatInt(live.Generation, 10)
	})
	got, err := access.LoadMirroredCredentials(ctx, k8s, credentialsNS, current(t, c))
	require.NoError(t, err)
	assert.Equal(t, "Other-pass-"+ns, got.Basic.Password)
}

// An anonymous Connector's copy holds no credentials and no CA.
func TestAnonymousConnectorCopy(t *testing.T) {
	ns := newNamespace(t)
	c := create(t, newConnector(t, ns, "anon", "harbor", harbor.URL(), ""))
	s := waitCopy(t, c, "written", func(*corev1.Secret) bool { return true })
	assert.Empty(t, s.Data)
	assert.Empty(t, s.Annotations[access.AnnotationMirrorProblemReason])
	got, err := access.LoadMirroredCredentials(context.Background(), k8s, credentialsNS, current(t, c))
	require.NoError(t, err)
	assert.Nil(t, got.Basic)
	assert.Nil(t, got.RootCAs)
}

// The copy goes with its Connector; a copy deleted by hand comes back; a copy whose Connector
// no longer exists (deleted while the manager was down) is collected.
func TestCopyLifecycle(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	basicSecret(t, ns, "robot", "robot$team+ci", "Life-pass-"+ns)
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "robot"))
	s := waitCopy(t, c, "written", func(s *corev1.Secret) bool { return len(s.Data) > 0 })

	require.NoError(t, k8s.Delete(ctx, s))
	waitCopy(t, c, "recreated", func(n *corev1.Secret) bool { return n.UID != s.UID && len(n.Data) > 0 })

	require.NoError(t, k8s.Delete(ctx, c))
	waitNoCopy(t, mirrorKey(c))

	// An orphan, as a manager that was down when its Connector went would leave it.
	ghost := policies.ConnectorRef{Namespace: ns, Name: "ghost"}
	orphan := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: credentialsNS, Name: access.MirrorName(ghost),
			Labels:      map[string]string{access.LabelMirror: "true", access.LabelMirrorNamespace: ns},
			Annotations: map[string]string{access.AnnotationMirrorOf: ghost.String()}},
		Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"username": []byte("u"), "password": []byte("Orphan-pass")},
	}
	secretsUsed.Store("Orphan-pass", true)
	require.NoError(t, k8s.Create(ctx, orphan))
	waitNoCopy(t, client.ObjectKeyFromObject(orphan))
}

// A Secret that holds a copy's name but is not the Connector's copy is never overwritten or
// deleted, the Connector gets a Warning Event, and the proxy's loader refuses it.
func TestCopyNeverOverwritesAnotherSecret(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	ref := policies.ConnectorRef{Namespace: ns, Name: "harbor"}
	squatter := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: credentialsNS, Name: access.MirrorName(ref),
			Labels:      map[string]string{access.LabelMirror: "true"},
			Annotations: map[string]string{access.AnnotationMirrorOf: ns + "/someone-else"}},
		Data: map[string][]byte{"username": []byte("someone"), "password": []byte("Squatter-pass")},
	}
	secretsUsed.Store("Squatter-pass", true)
	require.NoError(t, k8s.Create(ctx, squatter))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), squatter) })
	basicSecret(t, ns, "robot", "robot$team+ci", "Mine-pass-"+ns)
	c := create(t, newConnector(t, ns, "harbor", "harbor", harbor.URL(), "robot"))

	assertEvent(t, ns, "harbor", corev1.EventTypeWarning, controller.ReasonCredentialsNotCopied)
	var s corev1.Secret
	require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(squatter), &s))
	assert.Equal(t, "Squatter-pass", string(s.Data["password"]), "left alone")
	_, err := access.LoadMirroredCredentials(ctx, k8s, credentialsNS, current(t, c))
	assertNotCopied(t, err, c)

	require.NoError(t, k8s.Delete(ctx, c))
	time.Sleep(time.Second) // the deletion's reconcile must not take the other Secret with it
	require.NoError(t, k8s.Get(ctx, client.ObjectKeyFromObject(squatter), &s))
}
