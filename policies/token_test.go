package policies

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTokenExpiry(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	jws := func(header, claims string) string { return enc(header) + "." + enc(claims) + "." + enc("signature") }
	for _, tc := range []struct {
		name, token string
		want        time.Time // zero: no expiry read
	}{
		{"RS256 with exp", jws(`{"alg":"RS256"}`, `{"exp":1800000000}`), time.Unix(1_800_000_000, 0)},
		{"ES256 with exp", jws(`{"alg":"ES256"}`, `{"exp":1800000000,"sub":"x"}`), time.Unix(1_800_000_000, 0)},
		{"no exp", jws(`{"alg":"RS256"}`, `{"sub":"x"}`), time.Time{}},
		{"alg none", jws(`{"alg":"none"}`, `{"exp":1800000000}`), time.Time{}},
		{"HS256: not the API server's", jws(`{"alg":"HS256"}`, `{"exp":1800000000}`), time.Time{}},
		{"exp not a number", jws(`{"alg":"RS256"}`, `{"exp":"soon"}`), time.Time{}},
		{"not a JWS", "opaque-token", time.Time{}},
		{"empty", "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := TokenExpiry(tc.token)
			assert.Equal(t, !tc.want.IsZero(), ok)
			assert.True(t, got.Equal(tc.want), "got %s, want %s", got, tc.want)
		})
	}
}
