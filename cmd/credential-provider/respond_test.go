package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const image = "127.0.0.1:5050/namespaces/team-a/connectors/harbor/team/app"

var now = time.Unix(1_800_000_000, 0)

// jwtWithExp is a token shaped like the API server's (a JWS with RS256) whose exp is exp, or
// which has no exp when exp is zero. The plugin never verifies it; the proxy does.
func jwtWithExp(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims := `{"aud":["connectors-proxy"],"sub":"system:serviceaccount:team-a:builder"}`
	if !exp.IsZero() {
		claims = fmt.Sprintf(`{"aud":["connectors-proxy"],"exp":%d,"sub":"system:serviceaccount:team-a:builder"}`, exp.Unix())
	}
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("signature"))
}

func request(image, token string) string {
	return fmt.Sprintf(`{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":%q,"serviceAccountToken":%q}`, image, token)
}

func TestRespond(t *testing.T) {
	token := jwtWithExp(now.Add(time.Hour + 1500*time.Millisecond))
	noExp := jwtWithExp(time.Time{})
	expired := jwtWithExp(now.Add(-time.Second))
	answer := func(token, ttl string) string {
		return `{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"` + ttl +
			`","auth":{"127.0.0.1:5050":{"username":"connectors-pod","password":"` + token + `"}}}` + "\n"
	}
	for _, tc := range []struct {
		name, in, pullHost string
		want               string   // the exact stdout
		errHas             []string // or the error names these
	}{
		{name: "cached until the token expires", in: request(image, token), want: answer(token, "1h0m1s")},
		{name: "tagged image, extra fields of a newer kubelet", in: strings.Replace(request(image+":v1", token), `"image"`, `"serviceAccountAnnotations":{"a":"b"},"future":1,"image"`, 1), want: answer(token, "1h0m1s")},
		{name: "token without exp: not cached", in: request(image, noExp), want: answer(noExp, "0s")},
		{name: "expired token: not cached", in: request(image, expired), want: answer(expired, "0s")},
		{name: "another pull host", in: request("10.0.0.1:5050/x/y", token), pullHost: "10.0.0.1:5050", want: `{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"1h0m1s","auth":{"10.0.0.1:5050":{"username":"connectors-pod","password":"` + token + `"}}}` + "\n"},

		{name: "other registry", in: request("harbor.example.com/team/app", token), errHas: []string{`image "harbor.example.com/team/app" is on harbor.example.com`, "not on the pull host 127.0.0.1:5050 (--pull-host)", "matchImages"}},
		{name: "Docker Hub short name", in: request("busybox", token), errHas: []string{`image "busybox" is on docker.io`, "--pull-host"}},
		{name: "same host, other port", in: request("127.0.0.1:5051/x/y", token), errHas: []string{"is on 127.0.0.1:5051", "--pull-host"}},
		{name: "localhost spelling", in: request("localhost:5050/x/y", token), errHas: []string{"is on localhost:5050", "--pull-host"}},
		{name: "not an image", in: request("127.0.0.1:5050/UPPER", token), errHas: []string{`image "127.0.0.1:5050/UPPER" in the request is not an image reference`}},
		{name: "missing token", in: request(image, ""), errHas: []string{
			"sent no serviceAccountToken for image \"" + image + "\"",
			"tokenAttributes.serviceAccountTokenAudience: connectors-proxy", "requireServiceAccount: true",
		}},
		{name: "malformed JSON", in: `{"kind":"CredentialProviderRequest",`, errHas: []string{"stdin is not a CredentialProviderRequest in JSON"}},
		{name: "empty stdin", in: ``, errHas: []string{"stdin is not a CredentialProviderRequest in JSON"}},
		{name: "wrong type", in: `{"image":["a"]}`, errHas: []string{"stdin is not a CredentialProviderRequest in JSON"}},
		{name: "two objects", in: request(image, token) + request(image, token), errHas: []string{"stdin is not a CredentialProviderRequest in JSON"}},
		{name: "v1beta1 config", in: strings.Replace(request(image, token), "/v1\"", "/v1beta1\"", 1), errHas: []string{
			`apiVersion "credentialprovider.kubelet.k8s.io/v1beta1"`, "set apiVersion: credentialprovider.kubelet.k8s.io/v1 on the provider",
		}},
		{name: "no kind", in: strings.Replace(request(image, token), `"kind":"CredentialProviderRequest",`, "", 1), errHas: []string{`kind ""`}},
		{name: "oversized", in: `{"image":"` + strings.Repeat("a", maxRequest) + `"}`, errHas: []string{"over 1048576 bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pullHost := tc.pullHost
			if pullHost == "" {
				pullHost = "127.0.0.1:5050"
			}
			resp, err := respond(strings.NewReader(tc.in), pullHost, now)
			if tc.errHas != nil {
				require.Error(t, err)
				for _, s := range tc.errHas {
					assert.Contains(t, err.Error(), s)
				}
				assert.NotContains(t, err.Error(), token, "an error must never carry the token")
				return
			}
			require.NoError(t, err)
			var out bytes.Buffer
			require.NoError(t, writeResponse(&out, resp))
			assert.Equal(t, tc.want, out.String())
		})
	}
}

func TestRunRefusesArgumentsAndAnEmptyPullHost(t *testing.T) {
	err := run("127.0.0.1:5050", []string{"extra"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unexpected arguments ["extra"]`)
	err = run("", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--pull-host is empty")
}
