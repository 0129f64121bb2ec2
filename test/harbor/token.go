package testharbor

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/alauda/harbor-connector/test/testca"
)

// Harbor's token service names, which the registry's token auth is configured with.
const (
	tokenService = "harbor-registry"
	tokenIssuer  = "harbor-token-issuer"
)

// accessEntry is one element of the JWT's "access" claim (the distribution token spec).
type accessEntry struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

type tokenClaims struct {
	jwt.Claims
	Access []accessEntry `json:"access"`
}

// tokenSigner signs registry tokens with a key whose self-signed certificate is the registry's
// rootcertbundle; the certificate travels in the x5c header, as Harbor's does.
type tokenSigner struct {
	signer  jose.Signer
	certPEM []byte
}

func newTokenSigner() (*tokenSigner, error) {
	ca, err := testca.New("harbor-token-issuer")
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").
		WithHeader("x5c", []string{base64.StdEncoding.EncodeToString(ca.Cert.Raw)})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: ca.Key}, opts) // testca keys are P-256
	if err != nil {
		return nil, err
	}
	return &tokenSigner{signer: signer, certPEM: ca.CertPEM}, nil
}

func (s *tokenSigner) sign(subject string, access []accessEntry, ttl time.Duration) (string, time.Time, error) {
	now := time.Now()
	jti := make([]byte, 12)
	if _, err := rand.Read(jti); err != nil {
		return "", now, err
	}
	if access == nil {
		access = []accessEntry{}
	}
	claims := tokenClaims{
		Claims: jwt.Claims{
			Issuer:    tokenIssuer,
			Subject:   subject,
			Audience:  jwt.Audience{tokenService},
			Expiry:    jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now.Add(-10 * time.Second)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
		Access: access,
	}
	tok, err := jwt.Signed(s.signer).Claims(claims).Serialize()
	return tok, now, err
}

// parseScopes reads distribution scopes ("repository:<name>:<actions>"), as many as given, each
// parameter possibly holding several separated by spaces.
func parseScopes(values []string) []accessEntry {
	var out []accessEntry
	for _, v := range values {
		for _, scope := range strings.Fields(v) {
			typ, rest, ok := strings.Cut(scope, ":")
			i := strings.LastIndex(rest, ":")
			if !ok || i < 0 {
				continue
			}
			out = append(out, accessEntry{Type: typ, Name: rest[:i], Actions: strings.Split(rest[i+1:], ",")})
		}
	}
	return out
}

// grant narrows the requested access to what the account holds. Like Harbor, nothing is
// refused here: a caller with bad credentials or no rights still gets a token, with fewer (or
// no) actions, and the denial shows on the next registry call.
func (h *Server) grant(acc *account, requested []accessEntry) []accessEntry {
	out := make([]accessEntry, 0, len(requested))
	for _, r := range requested {
		if r.Type != "repository" {
			if r.Type == "registry" && acc != nil && acc.admin {
				out = append(out, r)
			}
			continue
		}
		out = append(out, accessEntry{Type: r.Type, Name: r.Name, Actions: nonNil(h.accounts.granted(acc, r.Name, r.Actions))})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// serveToken is Harbor's GET /service/token.
func (h *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	h.tokenFetches.Add(1)
	if h.tokenServiceDown.Load() {
		writeHarborError(w, http.StatusServiceUnavailable, "UNKNOWN", "token service unavailable")
		return
	}
	var acc *account
	subject := ""
	if user, pass, ok := r.BasicAuth(); ok {
		if a, ok := h.accounts.authenticate(user, pass); ok {
			acc, subject = a, user
		}
	}
	access := h.grant(acc, parseScopes(r.URL.Query()["scope"]))
	tok, issued, err := h.signer.sign(subject, access, h.opts.TokenTTL)
	if err != nil {
		writeHarborError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	h.issuedMu.Lock()
	h.issued = append(h.issued, tok)
	h.issuedMu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        tok,
		"access_token": "",
		"expires_in":   int(h.opts.TokenTTL / time.Second),
		"issued_at":    issued.UTC().Format(time.RFC3339),
	})
}

// writeHarborError answers as Harbor's lib/http.SendError: {"errors":[{"code","message"}]}.
func writeHarborError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
	fmt.Fprintln(w, string(b))
}
