package access

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

const (
	testNS       = "team-a"
	testPassword = "s3cr3t-Pa55w0rd"
	testUsername = "robot$team+ci"
)

// testCA is a self-signed CA certificate, PEM-encoded, and its parsed form.
func testCA(t *testing.T) ([]byte, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "harbor-connector test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert
}

func testSecret(ns, name string, typ corev1.SecretType, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: typ, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func basicAuthSecret(ns, name string) *corev1.Secret {
	return testSecret(ns, name, corev1.SecretTypeBasicAuth, map[string]string{
		corev1.BasicAuthUsernameKey: testUsername, corev1.BasicAuthPasswordKey: testPassword})
}

type credSpec struct {
	auth     string // auth Secret name; "" for anonymous
	authNS   string // spec.auth.secretRef.namespace
	noRef    bool   // spec.auth set without secretRef
	caSecret string // caCertSecretRef name; "" for none
}

func connectorWith(s credSpec) *v1alpha1.Connector {
	c := testConnector(testNS, "harbor")
	if s.auth != "" || s.noRef {
		c.Spec.Auth = &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic}
		if !s.noRef {
			c.Spec.Auth.SecretRef = &v1alpha1.SecretReference{Name: s.auth, Namespace: s.authNS}
		}
	}
	if s.caSecret != "" {
		c.Spec.CACertSecretRef = &v1alpha1.LocalSecretReference{Name: s.caSecret}
	}
	return c
}

func secretKey(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}

func TestLoadCredentials(t *testing.T) {
	caPEM, caCert := testCA(t)
	goodCA := testSecret(testNS, "registry-ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(caPEM)})
	forbiddenGet := func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "robot", errors.New("RBAC: access denied"))
	}
	// forbiddenFor refuses Gets of one Secret and serves the rest.
	forbiddenFor := func(name string) func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
		return func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if k.Name == name {
				return forbiddenGet(ctx, c, k, obj, opts...)
			}
			return c.Get(ctx, k, obj, opts...)
		}
	}

	cases := []struct {
		name    string
		spec    credSpec
		objects []client.Object
		get     func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error

		wantReason  string // "" for no error
		wantCA      bool
		wantAPIErr  bool // problem.Err set (and Forbidden)
		wantMsg     []string
		wantBasic   bool
		wantRoots   bool
		wantSecrets []types.NamespacedName
		wantGets    []types.NamespacedName
	}{
		{
			name: "anonymous", spec: credSpec{},
			objects: []client.Object{basicAuthSecret(testNS, "robot")},
		},
		{
			name: "auth without secretRef is anonymous", spec: credSpec{noRef: true},
			objects: []client.Object{basicAuthSecret(testNS, "robot")},
		},
		{
			name: "basic auth", spec: credSpec{auth: "robot"},
			objects:     []client.Object{basicAuthSecret(testNS, "robot")},
			wantBasic:   true,
			wantSecrets: []types.NamespacedName{secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "robot")},
		},
		{
			name: "basic auth, secretRef.namespace is the Connector's own", spec: credSpec{auth: "robot", authNS: testNS},
			objects:     []client.Object{basicAuthSecret(testNS, "robot")},
			wantBasic:   true,
			wantSecrets: []types.NamespacedName{secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "robot")},
		},
		{
			name: "basic auth with CA", spec: credSpec{auth: "robot", caSecret: "registry-ca"},
			objects:     []client.Object{basicAuthSecret(testNS, "robot"), goodCA},
			wantBasic:   true,
			wantRoots:   true,
			wantSecrets: []types.NamespacedName{secretKey(testNS, "registry-ca"), secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "registry-ca"), secretKey(testNS, "robot")},
		},
		{
			name: "anonymous with CA", spec: credSpec{caSecret: "registry-ca"},
			objects:     []client.Object{goodCA},
			wantRoots:   true,
			wantSecrets: []types.NamespacedName{secretKey(testNS, "registry-ca")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "registry-ca")},
		},
		{
			name: "auth Secret missing", spec: credSpec{auth: "robot"},
			objects:     []client.Object{basicAuthSecret("other", "robot")},
			wantReason:  v1alpha1.ReasonSecretNotFound,
			wantMsg:     []string{testNS + "/robot", "spec.auth.secretRef", "does not exist"},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "robot")},
		},
		{
			name: "auth Secret of the wrong type", spec: credSpec{auth: "robot"},
			objects: []client.Object{testSecret(testNS, "robot", corev1.SecretTypeOpaque, map[string]string{
				corev1.BasicAuthUsernameKey: testUsername, corev1.BasicAuthPasswordKey: testPassword})},
			wantReason:  v1alpha1.ReasonSecretWrongType,
			wantMsg:     []string{testNS + "/robot", string(corev1.SecretTypeOpaque), string(corev1.SecretTypeBasicAuth)},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "robot")},
		},
		{
			name: "auth Secret without password", spec: credSpec{auth: "robot"},
			objects: []client.Object{testSecret(testNS, "robot", corev1.SecretTypeBasicAuth, map[string]string{
				corev1.BasicAuthUsernameKey: testUsername})},
			wantReason:  v1alpha1.ReasonSecretMissingKey,
			wantMsg:     []string{testNS + "/robot", corev1.BasicAuthPasswordKey},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "robot")},
		},
		{
			name: "auth Secret with empty username", spec: credSpec{auth: "robot"},
			objects: []client.Object{testSecret(testNS, "robot", corev1.SecretTypeBasicAuth, map[string]string{
				corev1.BasicAuthUsernameKey: "", corev1.BasicAuthPasswordKey: testPassword})},
			wantReason:  v1alpha1.ReasonSecretMissingKey,
			wantMsg:     []string{testNS + "/robot", corev1.BasicAuthUsernameKey},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "robot")},
		},
		{
			name: "foreign secretRef.namespace", spec: credSpec{auth: "robot", authNS: "other"},
			// The foreign Secret exists and is valid: only the namespace check stops it.
			objects:    []client.Object{basicAuthSecret("other", "robot"), basicAuthSecret(testNS, "robot")},
			wantReason: v1alpha1.ReasonSecretNamespace,
			wantMsg:    []string{`"other"`, `"` + testNS + `"`, "spec.auth.secretRef.namespace"},
		},
		{
			name: "foreign secretRef.namespace after a good CA", spec: credSpec{auth: "robot", authNS: "other", caSecret: "registry-ca"},
			objects:     []client.Object{basicAuthSecret("other", "robot"), goodCA},
			wantReason:  v1alpha1.ReasonSecretNamespace,
			wantRoots:   true,
			wantSecrets: []types.NamespacedName{secretKey(testNS, "registry-ca")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "registry-ca")},
		},
		{
			name: "CA Secret missing", spec: credSpec{auth: "robot", caSecret: "registry-ca"},
			objects:     []client.Object{basicAuthSecret(testNS, "robot")},
			wantReason:  v1alpha1.ReasonCACertSecretNotFound,
			wantCA:      true,
			wantMsg:     []string{testNS + "/registry-ca", "spec.caCertSecretRef"},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "registry-ca")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "registry-ca")},
		},
		{
			name: "CA Secret without a certificate", spec: credSpec{caSecret: "registry-ca"},
			objects:     []client.Object{testSecret(testNS, "registry-ca", corev1.SecretTypeOpaque, map[string]string{"ca.key": string(caPEM)})},
			wantReason:  v1alpha1.ReasonCACertInvalid,
			wantCA:      true,
			wantMsg:     []string{testNS + "/registry-ca"},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "registry-ca")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "registry-ca")},
		},
		{
			name: "CA fine, auth Secret missing", spec: credSpec{auth: "robot", caSecret: "registry-ca"},
			objects:     []client.Object{goodCA},
			wantReason:  v1alpha1.ReasonSecretNotFound,
			wantMsg:     []string{testNS + "/robot"},
			wantRoots:   true,
			wantSecrets: []types.NamespacedName{secretKey(testNS, "registry-ca"), secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "registry-ca"), secretKey(testNS, "robot")},
		},
		{
			name: "auth Secret read Forbidden", spec: credSpec{auth: "robot"},
			objects:     []client.Object{basicAuthSecret(testNS, "robot")},
			get:         forbiddenGet,
			wantReason:  v1alpha1.ReasonSecretNotFound,
			wantAPIErr:  true,
			wantMsg:     []string{"forbidden", "RBAC: access denied"},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "robot")},
		},
		{
			name: "CA Secret read Forbidden", spec: credSpec{auth: "robot", caSecret: "registry-ca"},
			objects:     []client.Object{basicAuthSecret(testNS, "robot"), goodCA},
			get:         forbiddenGet,
			wantReason:  v1alpha1.ReasonCACertSecretNotFound,
			wantCA:      true,
			wantAPIErr:  true,
			wantMsg:     []string{"forbidden"},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "registry-ca")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "registry-ca")},
		},
		{
			name: "CA fine, auth Secret read Forbidden", spec: credSpec{auth: "robot", caSecret: "registry-ca"},
			objects:     []client.Object{basicAuthSecret(testNS, "robot"), goodCA},
			get:         forbiddenFor("robot"),
			wantReason:  v1alpha1.ReasonSecretNotFound,
			wantAPIErr:  true,
			wantRoots:   true,
			wantMsg:     []string{"forbidden"},
			wantSecrets: []types.NamespacedName{secretKey(testNS, "registry-ca"), secretKey(testNS, "robot")},
			wantGets:    []types.NamespacedName{secretKey(testNS, "registry-ca"), secretKey(testNS, "robot")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(tc.objects...)
			if tc.get != nil {
				b = b.WithInterceptorFuncs(interceptor.Funcs{Get: tc.get})
			}
			reader := &countingReader{Reader: b.Build()}

			creds, err := LoadCredentials(context.Background(), reader, connectorWith(tc.spec))

			assert.Equal(t, tc.wantGets, reader.gets, "Secrets read")
			for _, g := range reader.gets {
				assert.Equal(t, testNS, g.Namespace, "only the Connector's namespace is ever read")
			}
			assert.Equal(t, tc.wantSecrets, creds.Secrets)
			if tc.wantRoots {
				require.NotNil(t, creds.RootCAs)
				_, verr := caCert.Verify(x509.VerifyOptions{Roots: creds.RootCAs})
				assert.NoError(t, verr, "RootCAs holds the CA Secret's certificate")
			} else {
				assert.Nil(t, creds.RootCAs)
			}
			if tc.wantBasic {
				require.NotNil(t, creds.Basic)
				assert.Equal(t, policies.BasicCredentials{Username: testUsername, Password: testPassword}, *creds.Basic)
			} else {
				assert.Nil(t, creds.Basic)
			}

			if tc.wantReason == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			var problem *policies.SecretProblem
			require.ErrorAs(t, err, &problem)
			assert.Equal(t, tc.wantReason, problem.Reason)
			assert.Equal(t, tc.wantCA, problem.CA, "CA flag")
			assert.Equal(t, problem.Message, err.Error())
			for _, m := range tc.wantMsg {
				assert.Contains(t, problem.Message, m)
			}
			assert.NotContains(t, problem.Message, testPassword)
			if tc.wantAPIErr {
				require.Error(t, problem.Err)
				assert.True(t, apierrors.IsForbidden(problem.Err), "Err is the API error: %v", problem.Err)
			} else {
				assert.NoError(t, problem.Err, "Err is only for API errors")
			}
		})
	}
}

// The foreign Secret is never even asked for: counted on the reader, not inferred from the result.
func TestLoadCredentialsNeverReadsForeignSecret(t *testing.T) {
	var gets []client.ObjectKey
	reader := fake.NewClientBuilder().WithScheme(testScheme(t)).
		WithObjects(basicAuthSecret("kube-system", "admin")).
		WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, k client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			gets = append(gets, k)
			return c.Get(ctx, k, obj, opts...)
		}}).Build()
	creds, err := LoadCredentials(context.Background(), reader, connectorWith(credSpec{auth: "admin", authNS: "kube-system"}))
	var problem *policies.SecretProblem
	require.ErrorAs(t, err, &problem)
	assert.Equal(t, v1alpha1.ReasonSecretNamespace, problem.Reason)
	assert.Empty(t, gets)
	assert.Nil(t, creds.Basic)
	assert.Empty(t, creds.Secrets)
}

func TestCredentialsNeverFormatPassword(t *testing.T) {
	caPEM, _ := testCA(t)
	reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		basicAuthSecret(testNS, "robot"),
		testSecret(testNS, "registry-ca", corev1.SecretTypeOpaque, map[string]string{"ca.crt": string(caPEM)}),
	).Build()
	creds, err := LoadCredentials(context.Background(), reader, connectorWith(credSpec{auth: "robot", caSecret: "registry-ca"}))
	require.NoError(t, err)
	require.NotNil(t, creds.Basic)
	require.Equal(t, testPassword, creds.Basic.Password, "the test would pass vacuously without the password")

	for _, s := range []string{
		fmt.Sprintf("%v %+v %#v", creds, creds, creds),
		fmt.Sprintf("%v %+v %#v", &creds, &creds, &creds),
		fmt.Sprintf("%v %+v %#v %s", creds.Basic, creds.Basic, creds.Basic, creds.Basic),
		fmt.Sprintf("%v %+v %#v %s", *creds.Basic, *creds.Basic, *creds.Basic, *creds.Basic),
		fmt.Sprintf("%v", []any{creds, creds.Basic}),
	} {
		assert.NotContains(t, s, testPassword)
	}
	assert.Contains(t, fmt.Sprintf("%v", creds.Basic), testUsername, "the username still shows")
}
