package registryauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/policies"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func TestHarborRealm(t *testing.T) {
	cases := []struct {
		origin, realmHost, want string
	}{
		{"https://harbor.example.com", "", "https://harbor.example.com/service/token"},
		{"https://harbor.example.com/", "", "https://harbor.example.com/service/token"},
		{"https://harbor.example.com:8443", "", "https://harbor.example.com:8443/service/token"},
		{"http://harbor.internal:8080", "", "http://harbor.internal:8080/service/token"},
		{"https://harbor.example.com", "core.harbor.example.com", "https://core.harbor.example.com/service/token"},
		{"https://harbor.example.com", "core.harbor.example.com:8443", "https://core.harbor.example.com:8443/service/token"},
		// The named host is always reached over https, whatever the origin's scheme.
		{"http://harbor.internal:8080", "token.example.com", "https://token.example.com/service/token"},
	}
	for _, tc := range cases {
		t.Run(tc.origin+"|"+tc.realmHost, func(t *testing.T) {
			origin := mustURL(t, tc.origin)
			before := origin.String()
			r := HarborRealm(origin, tc.realmHost)
			require.NotNil(t, r.URL)
			assert.Equal(t, tc.want, r.URL.String())
			assert.Equal(t, "harbor-registry", r.Service)
			assert.Equal(t, before, origin.String(), "the origin is not modified")
		})
	}
}

func TestFromChallenge(t *testing.T) {
	const origin = "https://reg.example.com"
	cases := []struct {
		name      string
		status    int
		challenge []string // WWW-Authenticate values
		origin    string   // default origin
		realmHost string

		wantScheme  Scheme
		wantRealm   string
		wantService string
		wantErr     error    // errors.Is target
		wantMsg     []string // substrings of the error message
	}{
		{name: "200 needs no credentials", status: http.StatusOK, wantScheme: SchemeNone},
		{name: "200 ignores a challenge", status: http.StatusOK, challenge: []string{`Bearer realm="https://evil.example/token"`}, wantScheme: SchemeNone},
		{name: "bearer on the origin", status: http.StatusUnauthorized,
			challenge:  []string{`Bearer realm="https://reg.example.com/service/token",service="harbor-registry"`},
			wantScheme: SchemeBearer, wantRealm: "https://reg.example.com/service/token", wantService: "harbor-registry"},
		{name: "bearer scheme is case-insensitive, host too, default port explicit", status: http.StatusUnauthorized,
			challenge:  []string{`BEARER realm="https://REG.example.com:443/v2/token",service="registry.docker.io"`},
			wantScheme: SchemeBearer, wantRealm: "https://REG.example.com:443/v2/token", wantService: "registry.docker.io"},
		{name: "bearer without service", status: http.StatusUnauthorized,
			challenge:  []string{`Bearer realm="https://reg.example.com/token"`},
			wantScheme: SchemeBearer, wantRealm: "https://reg.example.com/token"},
		{name: "bearer on another host refused", status: http.StatusUnauthorized,
			challenge: []string{`Bearer realm="https://auth.example.com/token",service="registry"`},
			wantErr:   ErrRealmNotTrusted, wantMsg: []string{"https://auth.example.com/token", origin}},
		{name: "bearer on another port refused", status: http.StatusUnauthorized,
			challenge: []string{`Bearer realm="https://reg.example.com:8443/token"`},
			wantErr:   ErrRealmNotTrusted, wantMsg: []string{"https://reg.example.com:8443/token"}},
		{name: "bearer over http on an https origin refused", status: http.StatusUnauthorized,
			challenge: []string{`Bearer realm="http://reg.example.com/token"`},
			wantErr:   ErrRealmNotTrusted, wantMsg: []string{"http://reg.example.com/token"}},
		{name: "bearer on the named realm host over https", status: http.StatusUnauthorized, realmHost: "auth.example.com",
			challenge:  []string{`Bearer realm="https://auth.example.com/token",service="registry"`},
			wantScheme: SchemeBearer, wantRealm: "https://auth.example.com/token", wantService: "registry"},
		{name: "bearer on the named realm host over http refused", status: http.StatusUnauthorized, realmHost: "auth.example.com",
			challenge: []string{`Bearer realm="http://auth.example.com/token"`},
			wantErr:   ErrRealmNotTrusted, wantMsg: []string{"http://auth.example.com/token"}},
		{name: "bearer on a host other than the named one refused", status: http.StatusUnauthorized, realmHost: "auth.example.com",
			challenge: []string{`Bearer realm="https://evil.example.com/token"`},
			wantErr:   ErrRealmNotTrusted, wantMsg: []string{"https://evil.example.com/token"}},
		{name: "bearer on a lookalike host refused", status: http.StatusUnauthorized, realmHost: "auth.example.com",
			challenge: []string{`Bearer realm="https://auth.example.com.evil.example/token"`},
			wantErr:   ErrRealmNotTrusted},
		{name: "relative realm refused", status: http.StatusUnauthorized,
			challenge: []string{`Bearer realm="/service/token"`},
			wantErr:   ErrRealmNotTrusted, wantMsg: []string{`"/service/token"`}},
		{name: "unparsable realm refused", status: http.StatusUnauthorized,
			challenge: []string{`Bearer realm="https://reg.example.com:port/token"`},
			wantErr:   ErrRealmNotTrusted},
		{name: "bearer without realm refused", status: http.StatusUnauthorized,
			challenge: []string{`Bearer service="harbor-registry"`},
			wantErr:   ErrRealmNotTrusted},
		{name: "basic", status: http.StatusUnauthorized,
			challenge: []string{`Basic realm="Registry Realm"`}, wantScheme: SchemeBasic},
		{name: "unknown scheme skipped for basic", status: http.StatusUnauthorized,
			challenge: []string{`Negotiate`, `Basic realm="x"`}, wantScheme: SchemeBasic},
		{name: "401 without challenge", status: http.StatusUnauthorized,
			wantErr: ErrUnavailable, wantMsg: []string{"401"}},
		{name: "401 with only unknown schemes", status: http.StatusUnauthorized, challenge: []string{`Negotiate`},
			wantErr: ErrUnavailable, wantMsg: []string{"401"}},
		{name: "403 with a challenge is not a challenge", status: http.StatusForbidden,
			challenge: []string{`Bearer realm="https://reg.example.com/token"`},
			wantErr:   ErrUnavailable, wantMsg: []string{"403"}},
		{name: "500", status: http.StatusInternalServerError, wantErr: ErrUnavailable, wantMsg: []string{"500"}},
		{name: "404: not a registry", status: http.StatusNotFound, wantErr: ErrUnavailable, wantMsg: []string{"404"}},
		{name: "302 is not a 200", status: http.StatusFound, wantErr: ErrUnavailable, wantMsg: []string{"302"}},
		{name: "204 is not a 200", status: http.StatusNoContent, wantErr: ErrUnavailable, wantMsg: []string{"204"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.origin
			if o == "" {
				o = origin
			}
			resp := &http.Response{StatusCode: tc.status, Header: http.Header{}}
			for _, c := range tc.challenge {
				resp.Header.Add("WWW-Authenticate", c)
			}
			scheme, realm, err := FromChallenge(resp, mustURL(t, o), tc.realmHost)
			if tc.wantErr != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tc.wantErr)
				for _, other := range []error{ErrRealmNotTrusted, ErrUnavailable, ErrUnauthorized} {
					if other != tc.wantErr {
						assert.NotErrorIs(t, err, other)
					}
				}
				if tc.wantErr == ErrRealmNotTrusted {
					var re *RealmError
					require.ErrorAs(t, err, &re)
					assert.Equal(t, o, re.Origin.String())
				}
				for _, m := range tc.wantMsg {
					assert.Contains(t, err.Error(), m)
				}
				assert.Zero(t, scheme)
				assert.Nil(t, realm.URL)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantScheme, scheme)
			if tc.wantRealm == "" {
				assert.Nil(t, realm.URL)
			} else {
				require.NotNil(t, realm.URL)
				assert.Equal(t, tc.wantRealm, realm.URL.String())
			}
			assert.Equal(t, tc.wantService, realm.Service)
		})
	}
}

// tokenServer records what FetchToken sent and answers with status and body.
type tokenServer struct {
	mu     sync.Mutex
	reqs   []*http.Request
	status int
	body   string
}

func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(context.Background()))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	_, _ = io.WriteString(w, s.body)
}

func TestFetchTokenRequest(t *testing.T) {
	ts := &tokenServer{status: http.StatusOK, body: `{"token":"tok"}`}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	creds := &policies.BasicCredentials{Username: "robot$team+ci", Password: "s3cr3t:with:colons"}
	scopes := []string{"repository:team/app:pull,push", "repository:library/base:pull", "registry:catalog:*"}

	cases := []struct {
		name        string
		realm       string
		service     string
		scopes      []string
		creds       *policies.BasicCredentials
		wantQuery   url.Values
		wantPath    string
		wantNoQuery bool
	}{
		{name: "scopes, service and basic", realm: "/service/token", service: "harbor-registry", scopes: scopes, creds: creds,
			wantPath: "/service/token", wantQuery: url.Values{"service": {"harbor-registry"}, "scope": scopes}},
		{name: "one scope, anonymous", realm: "/token", service: "registry", scopes: scopes[:1],
			wantPath: "/token", wantQuery: url.Values{"service": {"registry"}, "scope": scopes[:1]}},
		{name: "no scopes, no service", realm: "/token", creds: creds, wantPath: "/token", wantNoQuery: true},
		{name: "realm's own query kept", realm: "/token?account=robot", service: "registry", scopes: scopes[:2], creds: creds,
			wantPath: "/token", wantQuery: url.Values{"account": {"robot"}, "service": {"registry"}, "scope": scopes[:2]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts.mu.Lock()
			ts.reqs = nil
			ts.mu.Unlock()
			realm := Realm{URL: mustURL(t, srv.URL+tc.realm), Service: tc.service}
			realmBefore := realm.URL.String()
			tok, err := FetchToken(context.Background(), NewTransport(nil, nil), realm, tc.scopes, tc.creds)
			require.NoError(t, err)
			assert.Equal(t, "tok", tok.Value)
			assert.Equal(t, realmBefore, realm.URL.String(), "the realm is not modified")

			require.Len(t, ts.reqs, 1)
			r := ts.reqs[0]
			assert.Equal(t, http.MethodGet, r.Method)
			assert.Equal(t, tc.wantPath, r.URL.Path)
			if tc.wantNoQuery {
				assert.Empty(t, r.URL.RawQuery)
			} else {
				assert.Equal(t, tc.wantQuery, r.URL.Query())
			}
			user, pass, ok := r.BasicAuth()
			if tc.creds == nil {
				assert.False(t, ok)
				assert.Empty(t, r.Header.Get("Authorization"))
			} else {
				require.True(t, ok, "Basic credentials sent")
				assert.Equal(t, tc.creds.Username, user)
				assert.Equal(t, tc.creds.Password, pass)
			}
		})
	}
}

func TestFetchTokenResponse(t *testing.T) {
	cases := []struct {
		name         string
		status       int
		body         string
		wantToken    string
		wantLifetime time.Duration
		wantErr      []error // every one must match errors.Is
		notErr       []error // none may match
		wantStatus   int     // a *StatusError with this status
	}{
		{name: "token", status: 200, body: `{"token":"t1","expires_in":300}`, wantToken: "t1", wantLifetime: 300 * time.Second},
		{name: "access_token", status: 200, body: `{"access_token":"a1","expires_in":120}`, wantToken: "a1", wantLifetime: 120 * time.Second},
		{name: "token preferred over access_token", status: 200, body: `{"token":"t1","access_token":"a1","expires_in":30}`, wantToken: "t1", wantLifetime: 30 * time.Second},
		{name: "expires_in 0 is 60 s", status: 200, body: `{"token":"t1","expires_in":0}`, wantToken: "t1", wantLifetime: 60 * time.Second},
		{name: "expires_in absent is 60 s", status: 200, body: `{"token":"t1","issued_at":"2024-01-01T00:00:00Z"}`, wantToken: "t1", wantLifetime: 60 * time.Second},
		{name: "expires_in negative is 60 s", status: 200, body: `{"access_token":"a1","expires_in":-5}`, wantToken: "a1", wantLifetime: 60 * time.Second},
		{name: "401", status: 401, body: `{"errors":[{"code":"UNAUTHORIZED"}]}`,
			wantErr: []error{ErrUnauthorized}, notErr: []error{ErrUnavailable, ErrNoToken}, wantStatus: 401},
		{name: "403", status: 403, wantErr: []error{ErrUnauthorized}, notErr: []error{ErrUnavailable}, wantStatus: 403},
		{name: "500", status: 500, body: "oops", wantErr: []error{ErrUnavailable}, notErr: []error{ErrUnauthorized}, wantStatus: 500},
		{name: "404", status: 404, wantErr: []error{ErrUnavailable}, notErr: []error{ErrUnauthorized}, wantStatus: 404},
		{name: "200 without token", status: 200, body: `{"expires_in":300}`, wantErr: []error{ErrNoToken, ErrUnavailable}, notErr: []error{ErrUnauthorized}},
		{name: "200 with empty tokens", status: 200, body: `{"token":"","access_token":""}`, wantErr: []error{ErrNoToken}},
		{name: "200 not JSON", status: 200, body: `<html>login</html>`, wantErr: []error{ErrNoToken, ErrUnavailable}},
		{name: "200 empty body", status: 200, body: ``, wantErr: []error{ErrNoToken}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&tokenServer{status: tc.status, body: tc.body})
			defer srv.Close()
			realm := Realm{URL: mustURL(t, srv.URL+"/service/token"), Service: "harbor-registry"}
			tok, err := FetchToken(context.Background(), NewTransport(nil, nil), realm, []string{"repository:a/b:pull"},
				&policies.BasicCredentials{Username: "u", Password: "p"})
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, Token{Value: tc.wantToken, Lifetime: tc.wantLifetime}, tok)
				return
			}
			require.Error(t, err)
			assert.Zero(t, tok)
			for _, e := range tc.wantErr {
				assert.ErrorIs(t, err, e)
			}
			for _, e := range tc.notErr {
				assert.NotErrorIs(t, err, e)
			}
			var se *StatusError
			if tc.wantStatus != 0 {
				require.ErrorAs(t, err, &se)
				assert.Equal(t, tc.wantStatus, se.Status)
				assert.Contains(t, err.Error(), fmt.Sprintf("HTTP %d", tc.wantStatus))
			} else {
				assert.False(t, errors.As(err, &se), "no StatusError for a 200")
			}
		})
	}
}

func TestStatusErrorIs(t *testing.T) {
	for status, want := range map[int]error{401: ErrUnauthorized, 403: ErrUnauthorized, 400: ErrUnavailable, 429: ErrUnavailable, 502: ErrUnavailable} {
		err := &StatusError{Status: status}
		assert.ErrorIs(t, err, want, "%d", status)
		assert.NotErrorIs(t, err, ErrRealmNotTrusted)
		assert.NotErrorIs(t, err, ErrNoToken)
	}
}

func TestFetchTokenConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	realm := Realm{URL: mustURL(t, "http://"+addr+"/service/token"), Service: "harbor-registry"}
	_, err = FetchToken(context.Background(), NewTransport(nil, nil), realm, nil, nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.NotErrorIs(t, err, ErrUnauthorized)
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr, "the dial error is wrapped: %v", err)
	assert.Equal(t, "dial", opErr.Op)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
}

func TestFetchTokenContextCanceled(t *testing.T) {
	srv := httptest.NewServer(&tokenServer{status: 200, body: `{"token":"t"}`})
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := FetchToken(ctx, NewTransport(nil, nil), Realm{URL: mustURL(t, srv.URL)}, nil, nil)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestNewTransportSettings(t *testing.T) {
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"} {
		t.Setenv(k, "http://proxy.invalid:3128")
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	roots := x509.NewCertPool()
	tr := NewTransport(roots, nil)
	assert.Nil(t, tr.Proxy, "no proxy from the environment")
	require.NotNil(t, tr.TLSClientConfig)
	assert.Equal(t, uint16(tls.VersionTLS12), tr.TLSClientConfig.MinVersion)
	assert.False(t, tr.TLSClientConfig.InsecureSkipVerify)
	assert.Same(t, roots, tr.TLSClientConfig.RootCAs)
	assert.False(t, tr.ForceAttemptHTTP2)
	assert.NotNil(t, tr.DialContext)
	assert.Nil(t, NewTransport(nil, nil).TLSClientConfig.RootCAs, "nil roots: the system pool")
}

// Requests go to the registry itself through the DialFunc, never to a proxy from the environment.
func TestNewTransportDialsTheRegistryNotAProxy(t *testing.T) {
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		t.Setenv(k, "http://proxy.invalid:3128")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Host+" "+r.URL.RequestURI())
	}))
	defer srv.Close()
	var mu sync.Mutex
	var dialed []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	resp, err := (&http.Client{Transport: NewTransport(nil, dial)}).Get("http://registry.example.test/v2/")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	assert.Equal(t, "registry.example.test /v2/", string(body), "an origin-form request, not a proxy's absolute-form")
	assert.Equal(t, []string{"registry.example.test:80"}, dialed)
}

func TestNewTransportTLS(t *testing.T) {
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	defer h2.Close()
	trusted := x509.NewCertPool()
	trusted.AddCert(h2.Certificate())

	otherPool := x509.NewCertPool()
	otherPool.AddCert(selfSigned(t))

	t.Run("trusted root, HTTP/1.1 although the server offers h2", func(t *testing.T) {
		resp, err := (&http.Client{Transport: NewTransport(trusted, nil)}).Get(h2.URL)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, 1, resp.ProtoMajor)
		assert.Equal(t, "HTTP/1.1", string(body))
	})
	for name, roots := range map[string]*x509.CertPool{"system roots": nil, "another CA": otherPool} {
		t.Run("untrusted with "+name, func(t *testing.T) {
			resp, err := (&http.Client{Transport: NewTransport(roots, nil)}).Get(h2.URL)
			if resp != nil {
				resp.Body.Close()
			}
			require.Error(t, err)
			var unknown x509.UnknownAuthorityError
			assert.True(t, errors.As(err, &unknown), "want an x509.UnknownAuthorityError, got %v", err)
			var verr *tls.CertificateVerificationError
			assert.ErrorAs(t, err, &verr)
		})
	}
}

// selfSigned is a CA certificate that signed nothing the test servers present.
func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "unrelated CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		DNSNames: []string{"example.com"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}
