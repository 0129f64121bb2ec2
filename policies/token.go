package policies

import (
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TokenExpiry reads the exp claim of a ServiceAccount token without verifying it. Only for
// bounding how long something derived from a token the caller already trusts is kept (the
// proxy's cache of a TokenReview, the kubelet's cache of a credential provider's answer); never
// for deciding who the caller is. false: not a JWS with one of the API server's algorithms, or
// no exp.
func TokenExpiry(token string) (time.Time, bool) {
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256})
	if err != nil {
		return time.Time{}, false
	}
	var claims jwt.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&claims); err != nil || claims.Expiry == nil {
		return time.Time{}, false
	}
	return claims.Expiry.Time(), true
}
