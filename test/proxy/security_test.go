package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ociErrors struct {
	Errors []struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Detail  map[string]string `json:"detail"`
	} `json:"errors"`
}

func readOCIError(t *testing.T, resp *http.Response) ociErrors {
	t.Helper()
	defer resp.Body.Close()
	var e ociErrors
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	require.NotEmpty(t, e.Errors)
	return e
}

// pushSample pushes a small image into team-a's connector and returns its manifest digest.
func pushSample(t *testing.T, repo string) string {
	t.Helper()
	home := clientHome(t, saToken(t, nsA))
	ref := prefix(nsA, "harbor") + "/team/" + repo + ":v1"
	out, err := runClient(t, home, "crane", "append", "--oci-empty-base", "-f", layerTar(t, 32<<10), "-t", ref)
	require.NoError(t, err, out)
	d, err := runClient(t, home, "crane", "digest", ref)
	require.NoError(t, err, d)
	return strings.TrimSpace(d)
}

func pathA(rest string) string { return "/v2/namespaces/" + nsA + "/connectors/harbor/team/" + rest }

// A token of namespace B can use nothing of A's connector: not direct paths, not uploads, not
// upload Locations A started, not Link pagination URLs A received.
func TestOtherNamespaceIsRefused(t *testing.T) {
	pushSample(t, "iso")
	tokenA, tokenB := saToken(t, nsA), saToken(t, nsB)

	for _, tc := range []struct{ method, path string }{
		{"GET", pathA("iso/manifests/v1")},
		{"HEAD", pathA("iso/manifests/v1")},
		{"GET", pathA("iso/tags/list")},
		{"POST", pathA("iso/blobs/uploads/")},
	} {
		resp := request(t, tc.method, tc.path, tokenB, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s %s", tc.method, tc.path)
		if tc.method != "HEAD" {
			e := readOCIError(t, resp)
			assert.Equal(t, "DENIED", e.Errors[0].Code)
			assert.Contains(t, e.Errors[0].Message, "connector team-a/harbor is not visible from namespace team-b")
			assert.Equal(t, "team-a/harbor", e.Errors[0].Detail["connector"])
		}
	}

	// An upload session A started cannot be continued with B's token.
	resp := request(t, "POST", pathA("iso/blobs/uploads/"), tokenA, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	require.True(t, strings.HasPrefix(loc, "/v2/namespaces/team-a/connectors/harbor/team/iso/blobs/uploads/"), loc)
	resp = request(t, "PATCH", loc, tokenB, strings.NewReader("stolen"))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp.Body.Close()

	// Link pagination: A gets a rewritten next link; B cannot follow it.
	for _, tag := range []string{"v2", "v3"} {
		home := clientHome(t, tokenA)
		out, err := runClient(t, home, "crane", "tag", prefix(nsA, "harbor")+"/team/iso:v1", tag)
		require.NoError(t, err, out)
	}
	resp = request(t, "GET", pathA("iso/tags/list?n=1"), tokenA, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	link := resp.Header.Get("Link")
	resp.Body.Close()
	require.Contains(t, link, "</v2/namespaces/team-a/connectors/harbor/team/iso/tags/list?", "Link rewritten to the proxy's prefix")
	next := link[strings.Index(link, "<")+1 : strings.Index(link, ">")]
	resp = request(t, "GET", next, tokenA, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "A follows its own Link")
	resp.Body.Close()
	resp = request(t, "GET", next, tokenB, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "B cannot")
	resp.Body.Close()
}

// A mount whose from= names another connector's repository is dropped: the registry answers 202
// and the client uploads; nothing of the other connector is reachable.
func TestMountFromAnotherConnectorIsDropped(t *testing.T) {
	digest := pushSample(t, "mount-guard")
	var manifest struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	req, err := http.NewRequest("GET", "https://"+proxyAddr+pathA("mount-guard/manifests/"+digest), nil)
	require.NoError(t, err)
	req.SetBasicAuth("sa", saToken(t, nsA))
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := httpClient().Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&manifest))
	resp.Body.Close()
	require.NotEmpty(t, manifest.Layers)
	layer := manifest.Layers[0].Digest

	tokenB := saToken(t, nsB)
	from := "namespaces/team-a/connectors/harbor/team/mount-guard"
	resp = request(t, "POST", "/v2/namespaces/team-b/connectors/harbor/other/stolen/blobs/uploads/?mount="+layer+"&from="+from, tokenB, nil)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, "mount dropped: an ordinary upload session instead of 201 Created")
	assert.Contains(t, resp.Header.Get("Location"), "/v2/namespaces/team-b/connectors/harbor/other/stolen/blobs/uploads/")
	// And the blob did not appear in B's repository.
	head := request(t, "HEAD", "/v2/namespaces/team-b/connectors/harbor/other/stolen/blobs/"+layer, tokenB, nil)
	head.Body.Close()
	assert.Equal(t, http.StatusNotFound, head.StatusCode)
}

func TestBadTokensAreRefused(t *testing.T) {
	pushSample(t, "tokens")
	path := pathA("tokens/manifests/v1")
	cases := map[string]string{
		"no token":           "",
		"forged":             forgedToken(t),
		"wrong audience":     saToken(t, nsA, "some-other-audience"),
		"expired":            expiredToken(t),
		"garbage":            "not-a-jwt",
		"signed by stranger": strangerToken(t),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			resp := request(t, "GET", path, tok, nil)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Equal(t, `Basic realm="connectors-proxy"`, resp.Header.Get("WWW-Authenticate"))
			e := readOCIError(t, resp)
			assert.Equal(t, "UNAUTHORIZED", e.Errors[0].Code)
			if name == "expired" {
				assert.Contains(t, e.Errors[0].Message, "expired", "refused for its expiry, not its signature")
			}
		})
	}
	resp := request(t, "GET", "/v2/", "", nil)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp = request(t, "GET", "/v2/", saToken(t, nsA), nil)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"))
	resp = request(t, "GET", "/v2/_catalog", saToken(t, nsA), nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, "UNSUPPORTED", readOCIError(t, resp).Errors[0].Code)
}

// forgedToken claims to be team-a's builder but is signed with a key the API server never saw.
func forgedToken(t *testing.T) string {
	return signToken(t, mustRSA(t), "https://kubernetes.default.svc.cluster.local", time.Now().Add(time.Hour))
}

// strangerToken is a well-formed token from another issuer.
func strangerToken(t *testing.T) string {
	return signToken(t, mustRSA(t), "https://stranger.example.com", time.Now().Add(time.Hour))
}

// expiredToken is signed with the API server's own ServiceAccount signing key, so only its
// expiry makes it invalid (TokenRequest cannot issue tokens shorter than 10 minutes).
func expiredToken(t *testing.T) string {
	keyPEM, err := os.ReadFile(filepath.Join(env.ControlPlane.APIServer.CertDir, "sa-signer.key"))
	require.NoError(t, err, "envtest's ServiceAccount signing key")
	block, _ := pem.Decode(keyPEM)
	require.NotNil(t, block)
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	require.NoError(t, err)
	valid := saToken(t, nsA)
	parsed, err := jwt.ParseSigned(valid, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	require.NoError(t, err)
	var claims jwt.Claims
	require.NoError(t, parsed.UnsafeClaimsWithoutVerification(&claims))
	return signTokenWith(t, key, parsed.Headers[0].KeyID, claims.Issuer, time.Now().Add(-time.Minute))
}

func signToken(t *testing.T, key *rsa.PrivateKey, issuer string, exp time.Time) string {
	return signTokenWith(t, key, "", issuer, exp)
}

// signTokenWith signs ServiceAccount-shaped claims for team-a's builder.
func signTokenWith(t *testing.T, key any, kid, issuer string, exp time.Time) string {
	t.Helper()
	alg := jose.RS256
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = jose.ES256
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	require.NoError(t, err)
	claims := map[string]any{
		"iss": issuer, "sub": "system:serviceaccount:team-a:builder", "aud": []string{audience},
		"exp": exp.Unix(), "iat": exp.Add(-time.Hour).Unix(), "nbf": exp.Add(-time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": nsA, "serviceaccount": map[string]string{"name": "builder", "uid": "00000000-0000-0000-0000-000000000000"}},
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	require.NoError(t, err)
	return tok
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return k
}

// A deleted Connector: NAME_UNKNOWN naming it.
func TestDeletedConnector(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, connectorWithSecret(ctx, nsA, "short-lived", harbor.URL(), "robot$x+y", "irrelevant-"+fmt.Sprint(time.Now().UnixNano()), harbor.CACertPEM(), nil))
	require.NoError(t, k8s.Delete(ctx, connectorObj(nsA, "short-lived")))
	deadline := time.Now().Add(5 * time.Second)
	var resp *http.Response
	for {
		resp = request(t, "GET", "/v2/namespaces/team-a/connectors/short-lived/team/app/manifests/v1", saToken(t, nsA), nil)
		if resp.StatusCode == http.StatusNotFound || time.Now().After(deadline) {
			break
		}
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
	}
	e := readOCIError(t, resp)
	assert.Equal(t, "NAME_UNKNOWN", e.Errors[0].Code)
	assert.Contains(t, e.Errors[0].Message, "connector team-a/short-lived does not exist")
}

// HEAD on a manifest keeps Content-Length, Content-Type and Docker-Content-Digest.
func TestHeadKeepsHeaders(t *testing.T) {
	digest := pushSample(t, "head")
	resp := request(t, "HEAD", pathA("head/manifests/v1"), saToken(t, nsA), nil)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Empty(t, body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, digest, resp.Header.Get("Docker-Content-Digest"))
	assert.NotEmpty(t, resp.Header.Get("Content-Type"))
	assert.Greater(t, resp.ContentLength, int64(0))
}
