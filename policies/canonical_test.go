package policies

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCanonicalPathAccepts(t *testing.T) {
	for _, p := range []string{
		"/",
		"/v2/",
		"/v2/team/app/manifests/v1",
		"/v2/team/app/manifests/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"/v2/team/app/blobs/uploads/",
		"/v2/team/app/blobs/uploads/8c4f1e0e-1d2b-4c1a-9f1e-2b3c4d5e6f70",
		"/v2/namespaces/team-a/connectors/harbor/team/sub/app/tags/list",
		"/v2/team/my.app_x-y/manifests/v1.2_rc-3",
		"/api/v2.0/ping",
		"/api/v2.0/projects/team/repositories/app/artifacts/v1/tags",
		"/api/v2.0/projects/team/repositories/a%252Fb/artifacts",
		"/api/v2.0/projects/team/repositories/a%252fb/artifacts/sha256:abc/additions/values.yaml",
		"/api/v2.0/projects/team/repositories/a%252Fb%252Fc",
		"/api/v2.0/projects/team/repositories/a.b%252F.c",
		"/a/.well-known/x", // a segment that starts with a dot is not a dot segment
		"/a/..b/b../...",
		"/a!$&'()*+,=:@~b",
	} {
		got, err := CanonicalPath(p)
		assert.NoError(t, err, p)
		assert.Equal(t, p, got, "returns exactly what it checked")
	}
}

func TestCanonicalPathRefuses(t *testing.T) {
	cases := []struct {
		path, says string
	}{
		// The reproductions, and every spelling of a dot segment.
		{"/api/v2.0/../../service/token", "dot segment"},
		{"/api/v2.0/%2e%2e/%2e%2e/service/token", "percent-encoded '.'"},
		{"/api/v2.0/%2E%2E/%2E%2E/service/token", "percent-encoded '.'"},
		{"/api/v2.0/..%2F..%2Fservice/token", "percent-encoded '/'"},
		{"/api/v2.0/.%2e/service/token", "percent-encoded '.'"},
		{"/api/v2.0/%2e./service/token", "percent-encoded '.'"},
		{"/api/v2.0/./ping", "dot segment"},
		{"/v2/..", "dot segment"},
		{"/v2/.", "dot segment"},
		{"/v2/team/app/../../_catalog", "dot segment"},
		// Separators.
		{"/v2/team%2Fapp/manifests/v1", "percent-encoded '/'"},
		{"/v2/team%2fapp/manifests/v1", "percent-encoded '/'"},
		{"/v2/team\\..\\_catalog", "backslash"},
		{"/v2/team%5C..%5C_catalog", "percent-encoded backslash"},
		{"/v2/team%5capp", "percent-encoded backslash"},
		{"//v2/", "empty segment"},
		{"/v2//_catalog", "empty segment"},
		{"/api/v2.0//projects", "empty segment"},
		// Double encoding outside Harbor's repository segment, or not a %252F inside it.
		{"/api/v2.0/%252e%252e/service/token", "double-encoding"},
		{"/v2/team%252Fapp/manifests/v1", "double-encoding"},
		{"/api/v2.0/projects/team%252Fx/repositories/app", "double-encoding"},
		{"/api/v2.0/projects/team/repositories/app/artifacts/v1%252F..", "double-encoding"},
		{"/api/v2.0/projects/team/repositories/a%252e%252e", "not %252F"},
		{"/api/v2.0/projects/team/repositories/a%25252Fb", "not %252F"},
		{"/api/v2.0/projects/team/repositories/a%2Fb", "percent-encoded '/'"},
		{"/api/v2.0/projects/team/repositories/%252F..%252Fx", "component"},
		{"/api/v2.0/projects/team/repositories/a%252F..", "component"},
		{"/api/v2.0/projects/team/repositories/a%252F%252Fb", "component"},
		{"/api/v2.0/projects/team/repositories/a%252F", "component"},
		// Control characters, NUL, invalid escapes.
		{"/v2/a%00b", "control character"},
		{"/v2/a\x00b", "control character"},
		{"/v2/a\nb", "control character"},
		{"/v2/a%0Ab", "control character"},
		{"/v2/a%7f", "control character"},
		{"/v2/a%zz", "invalid percent-escape"},
		{"/v2/a%4", "invalid percent-escape"},
		{"/v2/a%", "invalid percent-escape"},
		// Escapes of characters a path carries unencoded, which nginx would decode.
		{"/v2/%61pp/manifests/v1", `percent-encodes "a"`},
		{"/api/v2.0/projects/team/repositories/app/artifacts/sha256%3Aabc", `percent-encodes ":"`},
		{"/v2/a%7Eb", `percent-encodes "~"`},
		// Characters no registry or Harbor path holds, literal or encoded.
		{"/v2/a b", "not a path character"},
		{"/v2/a%20b", "no registry or Harbor API path holds"},
		{"/v2/a%3Fb", "no registry or Harbor API path holds"},
		{"/v2/a%23b", "no registry or Harbor API path holds"},
		{"/v2/a%C3%A9", "no registry or Harbor API path holds"},
		{"/v2/a\xc3\xa9", "non-ASCII"},
		{"/v2/a\"b", "not a path character"},
		{"/v2/a{b}", "not a path character"},
		{"/v2/a|b", "not a path character"},
		{"/v2/a[0]", "not a path character"},
		// Path parameters: servlet-style fronts strip ";..." before routing ("..;" is "..").
		{"/api/v2.0/..;/..;/service/token", "path parameter"},
		{"/v2/team/app;x/manifests/v1", "path parameter"},
		{"/api/v2.0/projects/team;/repositories", "path parameter"},
		{"/v2/?x=1", "query"},
		{"/v2/#x", "query or fragment"},
		// Not origin-form.
		{"", "empty"},
		{"*", "does not start with /"},
		{"v2/", "does not start with /"},
		{"http://harbor.example.com/v2/", "does not start with /"},
	}
	for _, tc := range cases {
		_, err := CanonicalPath(tc.path)
		if assert.Error(t, err, "%q must be refused", tc.path) {
			assert.Contains(t, err.Error(), tc.says, tc.path)
			assert.True(t, errors.Is(err, ErrNonCanonicalPath), tc.path)
			assert.NotContains(t, err.Error(), "\n", "one line, safe to log")
		}
	}
}

// The message says what is wrong and what to do, as the issue asks.
func TestCanonicalPathMessages(t *testing.T) {
	_, err := CanonicalPath("/api/v2.0/../../service/token")
	require.Error(t, err)
	assert.Equal(t, `request path contains a dot segment (".."): send the canonical path, with . and .. resolved`, err.Error())
	_, err = CanonicalPath("/api/v2.0/projects/p/repositories/a%2Fb")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "a%252Fb", "points Harbor API users at the encoding Harbor wants")
}

// An accepted path survives both places a Go proxy could lose it: the server's
// r.URL.EscapedPath() returns it byte for byte, and a client sends it byte for byte when it is
// the outgoing URL's RawPath.
func TestCanonicalPathSurvivesNetURL(t *testing.T) {
	for _, p := range []string{"/v2/team/app/manifests/sha256:abc", "/api/v2.0/projects/p/repositories/a%252Fb/artifacts", "/a!$&'()*+,=:@~b/"} {
		checkNetURLRoundTrip(t, p)
	}
}

func checkNetURLRoundTrip(t *testing.T, p string) {
	t.Helper()
	in, err := url.ParseRequestURI(p)
	require.NoError(t, err, p)
	assert.Equal(t, p, in.EscapedPath(), "a server sees the canonical path as sent")
	unescaped, err := url.PathUnescape(p)
	require.NoError(t, err, p)
	out := &url.URL{Scheme: "https", Host: "harbor.example.com", Path: unescaped, RawPath: p}
	assert.Equal(t, p, out.EscapedPath(), "a client sends the canonical path as checked")
	assert.Equal(t, p, out.RequestURI())
}

// A path a Go server received in a non-canonical spelling is refused even when read through
// r.URL.EscapedPath(), which may re-encode it: nothing non-canonical becomes canonical there.
func TestCanonicalPathThroughEscapedPath(t *testing.T) {
	for _, raw := range []string{"/v2/a\\..\\b", "/v2/a\"b", "/v2/%2e%2e/x", "/v2/a%41", "/v2/a{b}", "/v2/a\xc3\xa9"} {
		u, err := url.ParseRequestURI(raw)
		require.NoError(t, err, raw)
		_, err = CanonicalPath(u.EscapedPath())
		assert.Error(t, err, "%q (EscapedPath %q)", raw, u.EscapedPath())
	}
}

// FuzzCanonicalPath checks the canonicaliser's promise: every path it accepts starts with "/"
// and is unchanged by path.Clean of its once-unescaped form (path.Clean drops a trailing
// slash, which the canonical form keeps for /v2/), it returns its input unchanged, and Go's
// net/url neither re-encodes it on the way in nor on the way out.
func FuzzCanonicalPath(f *testing.F) {
	for _, seed := range []string{
		"/", "/v2/", "/v2/team/app/manifests/v1", "/api/v2.0/projects/p/repositories/a%252Fb/artifacts",
		"/api/v2.0/../../service/token", "/api/v2.0/%2e%2e/%2e%2e/service/token", "/api/v2.0/..%2F..%2Fservice/token",
		"/v2/a%5Cb", "/v2//x", "/a/..b/...", "/api/v2.0/projects/p/repositories/%252F..", "/x%25%32%65",
		"/api/v2.0/projects/p/repositories/.%252F.", "/a/b/.", "/%2e", "/a%00", "/a;b=c/d@e:f",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := CanonicalPath(p)
		if err != nil {
			if !errors.Is(err, ErrNonCanonicalPath) {
				t.Fatalf("%q: error %v does not wrap ErrNonCanonicalPath", p, err)
			}
			return
		}
		if got != p {
			t.Fatalf("CanonicalPath(%q) = %q, want its input", p, got)
		}
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("accepted %q, which does not start with /", p)
		}
		once, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("accepted %q, which does not unescape: %v", p, err)
		}
		clean := path.Clean(once)
		if clean != once && clean+"/" != once {
			t.Fatalf("accepted %q: path.Clean(%q) = %q", p, once, clean)
		}
		in, err := url.ParseRequestURI(p)
		if err != nil {
			t.Fatalf("accepted %q, which net/url refuses: %v", p, err)
		}
		if in.EscapedPath() != p {
			t.Fatalf("accepted %q, which a Go server sees as %q", p, in.EscapedPath())
		}
		out := &url.URL{Scheme: "https", Host: "h", Path: once, RawPath: p}
		if out.EscapedPath() != p {
			t.Fatalf("accepted %q, which a Go client sends as %q", p, out.EscapedPath())
		}
	})
}
