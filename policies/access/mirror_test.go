package access_test

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/test/testca"
)

// credentialsNS is where the copies live (the install's namespace for them).
const credentialsNS = access.DefaultCredentialsNamespace

func mirrorScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, v1alpha1.AddToScheme(s))
	return s
}

// The copy's name is a function of the Connector's namespace and name only, a valid Secret name
// of fixed length however long the Connector's name, and "a/b-c" and "a-b/c" do not share one.
func TestMirrorName(t *testing.T) {
	long := strings.Repeat("n", 253)
	names := map[string]policies.ConnectorRef{}
	for _, ref := range []policies.ConnectorRef{
		{Namespace: "a", Name: "b-c"}, {Namespace: "a-b", Name: "c"}, {Namespace: "team-a", Name: "harbor"},
		{Namespace: "team-b", Name: "harbor"}, {Namespace: strings.Repeat("x", 63), Name: long},
	} {
		name := access.MirrorName(ref)
		assert.Equal(t, name, access.MirrorName(ref), "deterministic")
		assert.Len(t, name, len("connector-")+20)
		assert.Empty(t, validation.IsDNS1123Subdomain(name), name)
		other, seen := names[name]
		assert.False(t, seen, "%s and %s share the name %s", ref, other, name)
		names[name] = ref
		assert.Equal(t, credentialsNS, access.MirrorKey(credentialsNS, ref).Namespace)
	}
}

func mirrorConnector(auth, ca bool) *v1alpha1.Connector {
	c := &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "harbor", UID: "uid-1", Generation: 3},
		Spec:       v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassHarbor, Address: "https://harbor.example"},
	}
	if auth {
		c.Spec.Auth = &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: "robot"}}
	}
	if ca {
		c.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: "ca"}
	}
	return c
}

// BuildMirror's copy, written and read back with LoadMirroredCredentials, gives what
// LoadCredentials gives from the Connector's own Secrets; the copy holds nothing else.
func TestMirrorRoundTrip(t *testing.T) {
	ca, err := testca.New("mirror test CA")
	require.NoError(t, err)
	leaf, err := ca.Issue("harbor.example")
	require.NoError(t, err)
	origin := []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "robot"}, Type: corev1.SecretTypeBasicAuth,
			Data: map[string][]byte{"username": []byte("robot$team+ci"), "password": []byte("Round-trip-pass"), "extra": []byte("not copied")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "ca"},
			Data: map[string][]byte{"ca.crt": ca.CertPEM, "tls.key": []byte("-----BEGIN PRIVATE KEY-----\nnot copied\n-----END PRIVATE KEY-----\n")}},
	}
	for _, tc := range []struct {
		name     string
		auth, ca bool
		keys     []string
	}{
		{"basic auth and CA", true, true, []string{"username", "password", "ca.crt"}},
		{"basic auth", true, false, []string{"username", "password"}},
		{"anonymous with CA", false, true, []string{"ca.crt"}},
		{"anonymous", false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := mirrorConnector(tc.auth, tc.ca)
			cl := fake.NewClientBuilder().WithScheme(mirrorScheme(t)).WithObjects(origin...).Build()
			s, err := access.BuildMirror(ctx, cl, credentialsNS, c)
			require.NoError(t, err)
			assert.Equal(t, credentialsNS, s.Namespace)
			assert.Equal(t, access.MirrorName(policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}), s.Name)
			assert.Equal(t, corev1.SecretTypeOpaque, s.Type)
			assert.Equal(t, map[string]string{access.LabelMirror: "true", access.LabelMirrorNamespace: "team-a"}, s.Labels)
			assert.Equal(t, map[string]string{access.AnnotationMirrorOf: "team-a/harbor", access.AnnotationMirrorUID: "uid-1",
				access.AnnotationMirrorGeneration: "3"}, s.Annotations)
			var got []string
			for k := range s.Data {
				got = append(got, k)
			}
			assert.ElementsMatch(t, tc.keys, got)
			if tc.ca {
				assert.Equal(t, ca.CertPEM, s.Data["ca.crt"], "the CA's certificates, re-encoded, and no other key of the CA Secret")
			}
			require.NoError(t, cl.Create(ctx, s))

			want, err := access.LoadCredentials(ctx, cl, c)
			require.NoError(t, err)
			creds, err := access.LoadMirroredCredentials(ctx, cl, credentialsNS, c)
			require.NoError(t, err)
			assert.Equal(t, []client.ObjectKey{client.ObjectKeyFromObject(s)}, creds.Secrets)
			assert.Equal(t, want.Basic, creds.Basic)
			if tc.ca {
				require.NotNil(t, creds.RootCAs)
				cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
				require.NoError(t, err)
				_, err = cert.Verify(x509.VerifyOptions{Roots: creds.RootCAs, DNSName: "harbor.example"})
				assert.NoError(t, err, "the copy's CA verifies the registry")
			} else {
				assert.Nil(t, creds.RootCAs)
			}
		})
	}
}

// A missing or malformed Secret is recorded in the copy, which then holds no data; reading it
// back gives the same problem LoadCredentials gives, CA flag included. An API error is not a
// record: BuildMirror fails and the existing copy stays.
func TestMirrorRecordsProblems(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		c      *v1alpha1.Connector
		origin []client.Object
		reason string
		ca     bool
	}{
		{"auth Secret missing", mirrorConnector(true, false), nil, v1alpha1.ReasonSecretNotFound, false},
		{"auth Secret of the wrong type", mirrorConnector(true, false), []client.Object{&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "robot"}, Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"username": []byte("u"), "password": []byte("Problem-pass")}}}, v1alpha1.ReasonSecretWrongType, false},
		{"CA Secret missing", mirrorConnector(false, true), nil, v1alpha1.ReasonCACertSecretNotFound, true},
		{"CA Secret without a certificate", mirrorConnector(false, true), []client.Object{&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "ca"}, Data: map[string][]byte{"ca.crt": []byte("junk")}}}, v1alpha1.ReasonCACertInvalid, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := fake.NewClientBuilder().WithScheme(mirrorScheme(t)).WithObjects(tc.origin...).Build()
			s, err := access.BuildMirror(ctx, cl, credentialsNS, tc.c)
			require.NoError(t, err)
			assert.Empty(t, s.Data)
			assert.Equal(t, tc.reason, s.Annotations[access.AnnotationMirrorProblemReason])
			_, want := access.LoadCredentials(ctx, cl, tc.c)
			assert.Equal(t, want.Error(), s.Annotations[access.AnnotationMirrorProblem])
			assert.NotContains(t, s.Annotations[access.AnnotationMirrorProblem], "Problem-pass")
			require.NoError(t, cl.Create(ctx, s))

			_, err = access.LoadMirroredCredentials(ctx, cl, credentialsNS, tc.c)
			var problem *policies.SecretProblem
			require.ErrorAs(t, err, &problem)
			assert.Equal(t, tc.reason, problem.Reason)
			assert.Equal(t, tc.ca, problem.CA)
			assert.Equal(t, want.Error(), problem.Message)
			assert.NoError(t, problem.Err)
		})
	}

	t.Run("API error", func(t *testing.T) {
		cl := fake.NewClientBuilder().WithScheme(mirrorScheme(t)).WithInterceptorFuncs(interceptor.Funcs{
			Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "robot", errors.New("RBAC"))
			}}).Build()
		_, err := access.BuildMirror(ctx, cl, credentialsNS, mirrorConnector(true, false))
		require.Error(t, err)
		var problem *policies.SecretProblem
		require.ErrorAs(t, err, &problem)
		assert.True(t, apierrors.IsForbidden(problem.Err))
	})
}

// The proxy's loader uses only the copy made for this Connector, as it is now: no copy, another
// Connector's, an earlier Connector's of the same name, an earlier spec's, or one missing what
// the spec asks for are all "not copied yet"; a refused read carries the API error.
func TestLoadMirroredCredentialsRefusesOtherCopies(t *testing.T) {
	ctx := context.Background()
	c := mirrorConnector(true, false)
	origin := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "robot"}, Type: corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{"username": []byte("robot$team+ci"), "password": []byte("Other-copies-pass")}}
	good, err := access.BuildMirror(ctx, fake.NewClientBuilder().WithScheme(mirrorScheme(t)).WithObjects(origin).Build(), credentialsNS, c)
	require.NoError(t, err)

	for name, mutate := range map[string]func(s *corev1.Secret){
		"no copy":                 nil,
		"another Connector's":     func(s *corev1.Secret) { s.Annotations[access.AnnotationMirrorOf] = "team-a/other" },
		"not labelled as a copy":  func(s *corev1.Secret) { delete(s.Labels, access.LabelMirror) },
		"an earlier Connector's":  func(s *corev1.Secret) { s.Annotations[access.AnnotationMirrorUID] = "uid-0" },
		"an earlier generation's": func(s *corev1.Secret) { s.Annotations[access.AnnotationMirrorGeneration] = "2" },
		"without a password":      func(s *corev1.Secret) { delete(s.Data, "password") },
		"without the CA the spec names": func(s *corev1.Secret) {
			// c asks for no CA; the case below swaps in a Connector that does.
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(mirrorScheme(t))
			conn := c
			if mutate != nil {
				s := good.DeepCopy()
				mutate(s)
				b = b.WithObjects(s)
			}
			if name == "without the CA the spec names" {
				conn = mirrorConnector(true, true)
			}
			_, err := access.LoadMirroredCredentials(ctx, b.Build(), credentialsNS, conn)
			var problem *policies.SecretProblem
			require.ErrorAs(t, err, &problem)
			assert.Equal(t, access.ReasonCredentialsNotCopied, problem.Reason)
			assert.Equal(t, "the manager has not copied connector team-a/harbor's credentials yet; see the Connector's conditions", problem.Message)
			assert.NoError(t, problem.Err)
		})
	}

	t.Run("read refused", func(t *testing.T) {
		cl := fake.NewClientBuilder().WithScheme(mirrorScheme(t)).WithObjects(good).WithInterceptorFuncs(interceptor.Funcs{
			Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, good.Name, errors.New("RBAC"))
			}}).Build()
		_, err := access.LoadMirroredCredentials(ctx, cl, credentialsNS, c)
		var problem *policies.SecretProblem
		require.ErrorAs(t, err, &problem)
		assert.True(t, apierrors.IsForbidden(problem.Err))
	})

	t.Run("only the credentials namespace is read", func(t *testing.T) {
		var gets []client.ObjectKey
		cl := fake.NewClientBuilder().WithScheme(mirrorScheme(t)).WithObjects(good, origin).WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				gets = append(gets, k)
				return c.Get(ctx, k, obj, opts...)
			}}).Build()
		creds, err := access.LoadMirroredCredentials(ctx, cl, credentialsNS, c)
		require.NoError(t, err)
		assert.Equal(t, "Other-copies-pass", creds.Basic.Password)
		assert.Equal(t, []client.ObjectKey{client.ObjectKeyFromObject(good)}, gets)
	})
}
