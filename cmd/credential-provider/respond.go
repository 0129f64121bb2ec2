package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"github.com/alauda/harbor-connector/policies"
)

// Username is the user name of every answer. The proxy identifies the pod by the password (its
// token, checked by TokenReview); the name only tells a per-pod pull from other Basic callers.
const Username = "connectors-pod"

// The request and response kinds, in the only version the plugin speaks. The kubelet sends
// the apiVersion of the provider's entry in its CredentialProviderConfig and rejects an answer
// in another one, so both must be v1.
var apiVersion = credentialproviderv1.SchemeGroupVersion.String()

const (
	requestKind  = "CredentialProviderRequest"
	responseKind = "CredentialProviderResponse"
)

// maxRequest bounds stdin: a request is an image name, a token and a few annotations.
const maxRequest = 1 << 20

// respond answers one CredentialProviderRequest read from in: the pulling pod's token as the
// password for the pull host.
//
// cacheKeyType Registry: the answer is the same for every image on the pull host (the proxy
// authorises each repository itself on every request), so one answer serves all images of a pod.
// It can serve no other pod: with tokenAttributes.cacheType Token the kubelet adds the token's
// hash to the cache key (pkg/credentialprovider/plugin: generateServiceAccountCacheKey), and a
// token is bound to its pod. (The kubelet also refuses an answer whose password is the token
// under any other cacheType.)
//
// cacheDuration: until the token's exp. The kubelet's token manager hands out a token only
// while it is valid and replaces it at 80 % of its lifetime, so an entry is only ever found with
// a live token; ending the entry at exp keeps no token in the kubelet's memory past its life.
// A token without a readable exp gets 0s: the kubelet does not cache the answer at all. Never
// nil: nil would mean the config's defaultCacheDuration, which knows nothing of the token.
func respond(in io.Reader, pullHost string, now time.Time) (*credentialproviderv1.CredentialProviderResponse, error) {
	req, err := readRequest(in)
	if err != nil {
		return nil, err
	}
	img, err := policies.ParseImage(req.Image)
	if err != nil {
		return nil, fmt.Errorf("image %q in the request is not an image reference: %w", req.Image, err)
	}
	if img.Domain != pullHost {
		return nil, fmt.Errorf("image %q is on %s, not on the pull host %s (--pull-host): list only the pull host in the provider's matchImages in the kubelet's CredentialProviderConfig, or set --pull-host to the webhook's pull host", req.Image, img.Domain, pullHost)
	}
	if req.ServiceAccountToken == "" {
		return nil, fmt.Errorf("the kubelet sent no serviceAccountToken for image %q: the provider in the kubelet's CredentialProviderConfig must set tokenAttributes.serviceAccountTokenAudience: %s and requireServiceAccount: true (the kubelet then does not call the plugin for pods without a ServiceAccount); Kubernetes 1.34 or later", req.Image, policies.DefaultAudience)
	}
	var ttl time.Duration
	if exp, ok := policies.TokenExpiry(req.ServiceAccountToken); ok && exp.After(now) {
		ttl = exp.Sub(now).Truncate(time.Second)
	}
	return &credentialproviderv1.CredentialProviderResponse{
		TypeMeta:      metav1.TypeMeta{APIVersion: apiVersion, Kind: responseKind},
		CacheKeyType:  credentialproviderv1.RegistryPluginCacheKeyType,
		CacheDuration: &metav1.Duration{Duration: ttl},
		Auth:          map[string]credentialproviderv1.AuthConfig{pullHost: {Username: Username, Password: req.ServiceAccountToken}},
	}, nil
}

// readRequest decodes the one request the kubelet writes. Unknown fields are ignored, as the
// kubelet's own decoder does, so a newer kubelet's additions do not break the plugin. Errors
// never quote the input: it holds the token.
func readRequest(in io.Reader) (*credentialproviderv1.CredentialProviderRequest, error) {
	raw, err := io.ReadAll(io.LimitReader(in, maxRequest+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request from stdin: %w", err)
	}
	if len(raw) > maxRequest {
		return nil, fmt.Errorf("the request on stdin is over %d bytes: run the plugin only from the kubelet, which writes one CredentialProviderRequest", maxRequest)
	}
	var req credentialproviderv1.CredentialProviderRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			err = fmt.Errorf("invalid JSON at byte %d", syntax.Offset)
		}
		return nil, fmt.Errorf("stdin is not a CredentialProviderRequest in JSON (%v): run the plugin only from the kubelet, which writes one", err)
	}
	if req.APIVersion != apiVersion || req.Kind != requestKind {
		return nil, fmt.Errorf("the request is apiVersion %q kind %q, want %s %s: set apiVersion: %s on the provider in the kubelet's CredentialProviderConfig", req.APIVersion, req.Kind, apiVersion, requestKind, apiVersion)
	}
	return &req, nil
}

// writeResponse writes resp as the kubelet reads it: one JSON object whose apiVersion and kind
// it checks before decoding the rest.
func writeResponse(out io.Writer, resp *credentialproviderv1.CredentialProviderResponse) error {
	if err := json.NewEncoder(out).Encode(resp); err != nil {
		return fmt.Errorf("writing the response to stdout: %w", err)
	}
	return nil
}
