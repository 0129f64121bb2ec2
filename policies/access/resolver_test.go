package access

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
)

// fakeSource is a Source over maps; a missing entry is a NotFound, as the API server says it.
type fakeSource struct {
	namespaces map[string]policies.Namespace
	connectors map[policies.ConnectorRef]*v1alpha1.Connector
	nsErr      map[string]error
	connErr    error
	// connectorReads counts Connector calls, so a test can tell whether existence was probed.
	connectorReads int
}

func (s *fakeSource) Connector(_ context.Context, ref policies.ConnectorRef) (*v1alpha1.Connector, error) {
	s.connectorReads++
	if s.connErr != nil {
		return nil, s.connErr
	}
	if c, ok := s.connectors[ref]; ok {
		return c, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: v1alpha1.GroupVersion.Group, Resource: "connectors"}, ref.Name)
}

func (s *fakeSource) Namespace(_ context.Context, name string) (policies.Namespace, error) {
	if err := s.nsErr[name]; err != nil {
		return policies.Namespace{}, err
	}
	if ns, ok := s.namespaces[name]; ok {
		return ns, nil
	}
	return policies.Namespace{}, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, name)
}

func testConnector(ns, name string) *v1alpha1.Connector {
	return &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ConnectorSpec{ConnectorClassName: v1alpha1.ClassHarbor, Address: "https://harbor.example.com"},
	}
}

func TestResolve(t *testing.T) {
	namespaces := map[string]policies.Namespace{
		"team-a":                  {Name: "team-a"},
		"team-b":                  {Name: "team-b"},
		policies.PublicNamespace:  {Name: policies.PublicNamespace},
		"proj-inner":              {Name: "proj-inner", Labels: map[string]string{policies.LabelInnerNamespace: "proj"}},
		"proj-dev":                {Name: "proj-dev", Labels: map[string]string{policies.LabelProject: "proj"}},
		"other-dev":               {Name: "other-dev", Labels: map[string]string{policies.LabelProject: "other"}},
		"unlabelled-inner-caller": {Name: "unlabelled-inner-caller", Labels: map[string]string{policies.LabelProject: ""}},
	}
	conns := []*v1alpha1.Connector{
		testConnector("team-a", "harbor"),
		testConnector(policies.PublicNamespace, "shared"),
		testConnector("proj-inner", "harbor"),
		testConnector("gone-ns", "harbor"), // its namespace is not in namespaces
	}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "team-b", errors.New("rbac says no"))
	internal := apierrors.NewInternalError(errors.New("etcd is down"))

	type want int
	const (
		found want = iota
		notVisible
		notFound
		apiError
	)
	cases := []struct {
		name    string
		from    string
		ref     policies.ConnectorRef
		missing []string // namespaces deleted from the Source for this case
		nsErr   map[string]error
		connErr error
		want    want
		// wantReads: whether the Source was asked for the connector at all.
		wantReads int
		msg       []string // substrings the error message must contain
		wrapped   error    // for apiError: errors.Is must find it
	}{
		{name: "same namespace", from: "team-a", ref: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, want: found, wantReads: 1},
		{name: "same namespace, namespace missing", from: "gone-ns", ref: policies.ConnectorRef{Namespace: "gone-ns", Name: "harbor"}, want: found, wantReads: 1},
		{name: "kube-public from another namespace", from: "team-b", ref: policies.ConnectorRef{Namespace: policies.PublicNamespace, Name: "shared"}, want: found, wantReads: 1},
		{name: "kube-public from a labelled namespace", from: "proj-dev", ref: policies.ConnectorRef{Namespace: policies.PublicNamespace, Name: "shared"}, want: found, wantReads: 1},
		{name: "kube-public from a missing namespace", from: "no-such-ns", ref: policies.ConnectorRef{Namespace: policies.PublicNamespace, Name: "shared"}, want: found, wantReads: 1},
		{name: "kube-public with kube-public namespace object missing", from: "team-b", missing: []string{policies.PublicNamespace},
			ref: policies.ConnectorRef{Namespace: policies.PublicNamespace, Name: "shared"}, want: found, wantReads: 1},
		{name: "project group matches inner namespace", from: "proj-dev", ref: policies.ConnectorRef{Namespace: "proj-inner", Name: "harbor"}, want: found, wantReads: 1},
		{name: "project group mismatch", from: "other-dev", ref: policies.ConnectorRef{Namespace: "proj-inner", Name: "harbor"}, want: notVisible,
			msg: []string{"proj-inner/harbor", "other-dev"}},
		{name: "empty project label never matches", from: "unlabelled-inner-caller", ref: policies.ConnectorRef{Namespace: "proj-inner", Name: "harbor"}, want: notVisible,
			msg: []string{"proj-inner/harbor", "unlabelled-inner-caller"}},
		{name: "unlabelled namespace", from: "team-b", ref: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, want: notVisible,
			msg: []string{"team-a/harbor", "team-b"}},
		{name: "owner namespace missing", from: "team-b", ref: policies.ConnectorRef{Namespace: "gone-ns", Name: "harbor"}, want: notVisible,
			msg: []string{"gone-ns/harbor", "team-b"}},
		{name: "owner namespace missing, caller in its group", from: "proj-dev", missing: []string{"proj-inner"},
			ref: policies.ConnectorRef{Namespace: "proj-inner", Name: "harbor"}, want: notVisible, msg: []string{"proj-inner/harbor", "proj-dev"}},
		{name: "caller namespace missing", from: "no-such-ns", ref: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, want: notVisible,
			msg: []string{"team-a/harbor", "no-such-ns"}},
		{name: "caller namespace missing, owner is a group's inner namespace", from: "no-such-ns", ref: policies.ConnectorRef{Namespace: "proj-inner", Name: "harbor"}, want: notVisible,
			msg: []string{"proj-inner/harbor", "no-such-ns"}},
		{name: "visible but connector missing", from: "team-a", ref: policies.ConnectorRef{Namespace: "team-a", Name: "nope"}, want: notFound, wantReads: 1,
			msg: []string{"team-a/nope"}},
		{name: "kube-public connector missing", from: "team-b", ref: policies.ConnectorRef{Namespace: policies.PublicNamespace, Name: "nope"}, want: notFound, wantReads: 1,
			msg: []string{policies.PublicNamespace + "/nope"}},
		{name: "group-visible connector missing", from: "proj-dev", ref: policies.ConnectorRef{Namespace: "proj-inner", Name: "nope"}, want: notFound, wantReads: 1,
			msg: []string{"proj-inner/nope"}},
		{name: "invisible and missing", from: "team-b", ref: policies.ConnectorRef{Namespace: "team-a", Name: "nope"}, want: notVisible,
			msg: []string{"team-a/nope", "team-b"}},
		{name: "invisible and missing, owner namespace missing too", from: "team-b", ref: policies.ConnectorRef{Namespace: "no-such-ns", Name: "nope"}, want: notVisible,
			msg: []string{"no-such-ns/nope", "team-b"}},
		{name: "caller namespace read fails", from: "team-b", nsErr: map[string]error{"team-b": forbidden},
			ref: policies.ConnectorRef{Namespace: policies.PublicNamespace, Name: "shared"}, want: apiError, wrapped: forbidden, msg: []string{"team-b"}},
		{name: "caller namespace read fails, same namespace", from: "team-a", nsErr: map[string]error{"team-a": internal},
			ref: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, want: apiError, wrapped: internal, msg: []string{"team-a"}},
		{name: "owner namespace read fails", from: "proj-dev", nsErr: map[string]error{"proj-inner": internal},
			ref: policies.ConnectorRef{Namespace: "proj-inner", Name: "harbor"}, want: apiError, wrapped: internal, msg: []string{"proj-inner"}},
		{name: "connector read fails", from: "team-a", connErr: internal,
			ref: policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}, want: apiError, wantReads: 1, wrapped: internal, msg: []string{"team-a/harbor"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeSource{namespaces: map[string]policies.Namespace{}, connectors: map[policies.ConnectorRef]*v1alpha1.Connector{}, nsErr: tc.nsErr, connErr: tc.connErr}
			for k, v := range namespaces {
				src.namespaces[k] = v
			}
			for _, m := range tc.missing {
				delete(src.namespaces, m)
			}
			for _, c := range conns {
				src.connectors[policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name}] = c
			}
			r := &Resolver{Source: src}

			got, err := r.Resolve(context.Background(), tc.from, tc.ref)
			assert.Equal(t, tc.wantReads, src.connectorReads, "connector reads")
			if tc.want == found {
				require.NoError(t, err)
				require.NotNil(t, got)
				assert.Equal(t, tc.ref.Namespace, got.Namespace)
				assert.Equal(t, tc.ref.Name, got.Name)
				assert.NoError(t, r.CheckVisible(context.Background(), tc.from, tc.ref))
				return
			}
			require.Error(t, err)
			assert.Nil(t, got)
			for _, m := range tc.msg {
				assert.Contains(t, err.Error(), m)
			}
			checkErr := r.CheckVisible(context.Background(), tc.from, tc.ref)
			switch tc.want {
			case notVisible:
				assert.True(t, IsNotVisible(err), "want NotVisible, got %T %v", err, err)
				assert.False(t, IsNotFound(err))
				var nv *NotVisibleError
				require.ErrorAs(t, err, &nv)
				assert.Equal(t, tc.ref, nv.Ref)
				assert.Equal(t, tc.from, nv.From)
				assert.True(t, IsNotVisible(checkErr))
				assert.Equal(t, err.Error(), checkErr.Error())
			case notFound:
				assert.True(t, IsNotFound(err), "want NotFound, got %T %v", err, err)
				assert.False(t, IsNotVisible(err))
				var nf *NotFoundError
				require.ErrorAs(t, err, &nf)
				assert.Equal(t, tc.ref, nf.Ref)
				assert.NoError(t, checkErr, "CheckVisible only applies visibility")
			case apiError:
				assert.False(t, IsNotVisible(err), "an API error is not NotVisible: %v", err)
				assert.False(t, IsNotFound(err), "an API error is not NotFound: %v", err)
				assert.False(t, apierrors.IsNotFound(err))
				assert.ErrorIs(t, err, tc.wrapped)
				assert.Equal(t, apierrors.ReasonForError(tc.wrapped), apierrors.ReasonForError(err), "the API reason survives wrapping")
			}
		})
	}
}

// An invisible connector gets the same answer whether it exists or not, so a namespace cannot
// probe another namespace's connectors.
func TestResolveDoesNotRevealExistence(t *testing.T) {
	ref := policies.ConnectorRef{Namespace: "team-a", Name: "harbor"}
	namespaces := map[string]policies.Namespace{"team-a": {Name: "team-a"}, "team-b": {Name: "team-b"}}
	with := &fakeSource{namespaces: namespaces, connectors: map[policies.ConnectorRef]*v1alpha1.Connector{ref: testConnector("team-a", "harbor")}}
	without := &fakeSource{namespaces: namespaces, connectors: map[policies.ConnectorRef]*v1alpha1.Connector{}}

	_, existing := (&Resolver{Source: with}).Resolve(context.Background(), "team-b", ref)
	_, missing := (&Resolver{Source: without}).Resolve(context.Background(), "team-b", ref)
	require.Error(t, existing)
	require.Error(t, missing)
	assert.IsType(t, &NotVisibleError{}, existing)
	assert.IsType(t, &NotVisibleError{}, missing)
	assert.Equal(t, existing.Error(), missing.Error())
	assert.Zero(t, with.connectorReads, "an invisible connector is never looked up")
	assert.Zero(t, without.connectorReads, "an invisible connector is never looked up")
}

func TestErrorPredicatesSeeThroughWrapping(t *testing.T) {
	ref := policies.ConnectorRef{Namespace: "ns", Name: "c"}
	nf := wrapForTest(&NotFoundError{Ref: ref})
	assert.True(t, IsNotFound(nf))
	assert.False(t, IsNotVisible(nf))
	assert.Equal(t, "wrapped: connector ns/c does not exist", nf.Error())

	nv := wrapForTest(&NotVisibleError{Ref: ref, From: "x", rule: errors.New("rule says no")})
	assert.True(t, IsNotVisible(nv))
	assert.False(t, IsNotFound(nv))
	assert.Equal(t, "wrapped: rule says no", nv.Error())

	assert.False(t, IsNotFound(errors.New("connector ns/c does not exist")))
	assert.False(t, IsNotVisible(nil))
}

func wrapForTest(err error) error { return &testWrapErr{err} }

type testWrapErr struct{ err error }

func (w *testWrapErr) Error() string { return "wrapped: " + w.err.Error() }
func (w *testWrapErr) Unwrap() error { return w.err }

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, v1alpha1.AddToScheme(s))
	return s
}

func namespaceObj(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// countingReader counts Gets on an underlying reader.
type countingReader struct {
	client.Reader
	gets []client.ObjectKey
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets = append(c.gets, key)
	return c.Reader.Get(ctx, key, obj, opts...)
}

func TestCachedSource(t *testing.T) {
	scheme := testScheme(t)
	inCache := []client.Object{
		testConnector("team-a", "cached"),
		namespaceObj("team-a", map[string]string{policies.LabelProject: "proj"}),
	}
	inLive := []client.Object{
		testConnector("team-a", "cached"),
		testConnector("team-a", "fresh"),
		namespaceObj("team-a", map[string]string{policies.LabelProject: "proj"}),
		namespaceObj("fresh-ns", map[string]string{policies.LabelInnerNamespace: "proj"}),
	}
	cases := []struct {
		name      string
		noLive    bool
		connector string // read a connector in team-a, or
		namespace string // read a namespace
		wantMiss  int
		wantLive  int
		wantErr   bool
		wantLabel string // expected namespace label value (either key)
	}{
		{name: "connector cache hit", connector: "cached", wantMiss: 0, wantLive: 0},
		{name: "connector cache miss, live hit", connector: "fresh", wantMiss: 1, wantLive: 1},
		{name: "connector missing everywhere", connector: "absent", wantMiss: 1, wantLive: 1, wantErr: true},
		{name: "connector cache miss, no live", connector: "fresh", noLive: true, wantErr: true},
		{name: "namespace cache hit", namespace: "team-a", wantLabel: "proj"},
		{name: "namespace cache miss, live hit", namespace: "fresh-ns", wantMiss: 1, wantLive: 1, wantLabel: "proj"},
		{name: "namespace missing everywhere", namespace: "absent", wantMiss: 1, wantLive: 1, wantErr: true},
		{name: "namespace cache miss, no live", namespace: "fresh-ns", noLive: true, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cache := &countingReader{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(inCache...).Build()}
			live := &countingReader{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(inLive...).Build()}
			misses := 0
			src := &CachedSource{Cache: cache, Live: live, OnMiss: func() { misses++ }}
			if tc.noLive {
				src.Live = nil
			}
			var err error
			if tc.connector != "" {
				var c *v1alpha1.Connector
				c, err = src.Connector(context.Background(), policies.ConnectorRef{Namespace: "team-a", Name: tc.connector})
				if !tc.wantErr {
					require.NoError(t, err)
					assert.Equal(t, "team-a", c.Namespace)
					assert.Equal(t, tc.connector, c.Name)
					assert.Equal(t, "https://harbor.example.com", c.Spec.Address)
				}
			} else {
				var ns policies.Namespace
				ns, err = src.Namespace(context.Background(), tc.namespace)
				if !tc.wantErr {
					require.NoError(t, err)
					assert.Equal(t, tc.namespace, ns.Name)
					assert.Equal(t, tc.wantLabel, ns.Labels[policies.LabelProject]+ns.Labels[policies.LabelInnerNamespace])
				}
			}
			if tc.wantErr {
				require.Error(t, err)
				assert.True(t, apierrors.IsNotFound(err), "want NotFound, got %v", err)
			}
			assert.Equal(t, tc.wantMiss, misses, "OnMiss calls")
			assert.Len(t, cache.gets, 1, "the cache is always read first, once")
			assert.Len(t, live.gets, tc.wantLive, "live reads")
		})
	}
}

func TestCachedSourceLiveNilReturnsCacheError(t *testing.T) {
	cacheErr := apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "fresh-ns")
	cache := fake.NewClientBuilder().WithScheme(testScheme(t)).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return cacheErr
		},
	}).Build()
	called := false
	src := &CachedSource{Cache: cache, OnMiss: func() { called = true }}
	_, err := src.Namespace(context.Background(), "fresh-ns")
	assert.Same(t, cacheErr, err)
	_, err = src.Connector(context.Background(), policies.ConnectorRef{Namespace: "a", Name: "b"})
	assert.Same(t, cacheErr, err)
	assert.False(t, called, "OnMiss is only for live reads")
}

func TestCachedSourceOtherCacheErrorsDoNotGoLive(t *testing.T) {
	scheme := testScheme(t)
	cacheErr := apierrors.NewInternalError(errors.New("cache broken"))
	cache := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return cacheErr
		},
	}).Build()
	live := &countingReader{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(testConnector("a", "b")).Build()}
	misses := 0
	src := &CachedSource{Cache: cache, Live: live, OnMiss: func() { misses++ }}
	_, err := src.Connector(context.Background(), policies.ConnectorRef{Namespace: "a", Name: "b"})
	assert.Same(t, cacheErr, err)
	assert.Empty(t, live.gets)
	assert.Zero(t, misses)
}

// A nil OnMiss must not panic on a live read.
func TestCachedSourceNilOnMiss(t *testing.T) {
	scheme := testScheme(t)
	src := &CachedSource{
		Cache: fake.NewClientBuilder().WithScheme(scheme).Build(),
		Live:  fake.NewClientBuilder().WithScheme(scheme).WithObjects(testConnector("a", "b")).Build(),
	}
	c, err := src.Connector(context.Background(), policies.ConnectorRef{Namespace: "a", Name: "b"})
	require.NoError(t, err)
	assert.Equal(t, "b", c.Name)
}

// The Resolver over a CachedSource: a connector and its workload applied together resolve
// although the informer has not seen the connector yet, and visibility still applies.
func TestResolverOverCachedSource(t *testing.T) {
	scheme := testScheme(t)
	cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		namespaceObj("proj-inner", map[string]string{policies.LabelInnerNamespace: "proj"}),
		namespaceObj("proj-dev", map[string]string{policies.LabelProject: "proj"}),
		namespaceObj("stranger", nil),
	).Build()
	live := fake.NewClientBuilder().WithScheme(scheme).WithObjects(testConnector("proj-inner", "harbor")).Build()
	misses := 0
	r := &Resolver{Source: &CachedSource{Cache: cache, Live: live, OnMiss: func() { misses++ }}}
	ref := policies.ConnectorRef{Namespace: "proj-inner", Name: "harbor"}

	c, err := r.Resolve(context.Background(), "proj-dev", ref)
	require.NoError(t, err)
	assert.Equal(t, "harbor", c.Name)
	assert.Equal(t, 1, misses)

	_, err = r.Resolve(context.Background(), "stranger", ref)
	assert.True(t, IsNotVisible(err), "%v", err)
	assert.Equal(t, 1, misses, "an invisible connector is not read live")

	_, err = r.Resolve(context.Background(), "proj-dev", policies.ConnectorRef{Namespace: "proj-inner", Name: "absent"})
	assert.True(t, IsNotFound(err), "%v", err)
}
