package wiring

import (
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// metricsDecisionTTL is how long an allowed caller is remembered: a scrape every 15-30 s then
// costs two API requests a minute, and a revoked binding takes effect within it. A refused
// caller is remembered for metricsRefusalTTL, so a scraper with a wrong token costs nothing more.
const (
	metricsDecisionTTL = time.Minute
	metricsRefusalTTL  = 10 * time.Second
)

// Reviews of tokens not remembered go through a token bucket: requests with ever new tokens
// cost the API server at most this many TokenReviews (and SubjectAccessReviews) per second;
// over it the answer is 429.
const (
	metricsReviewsPerSecond = 2
	metricsReviewsBurst     = 10
)

// MetricsAuth is the metrics server's filter (controller-runtime's FilterProvider hook): the
// API server authenticates the bearer token (TokenReview) and authorises `get` on the
// non-resource URL (SubjectAccessReview), as kubebuilder projects do. It is written on client-go
// rather than controller-runtime's filters package, which links k8s.io/apiserver: measured +14 MB
// of binary and +11 MiB of resident memory in the proxy, whose streaming goal is 64 MiB.
func MetricsAuth(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	cs, err := kubernetes.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	a := newMetricsAuthorizer(cs)
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			status, msg := a.decide(r)
			if status != http.StatusOK {
				log.V(1).Info("metrics request refused", "status", status, "reason", msg)
				http.Error(w, msg, status)
				return
			}
			next.ServeHTTP(w, r)
		}), nil
	}, nil
}

type metricsAuthorizer struct {
	cs      kubernetes.Interface
	reviews flowcontrol.RateLimiter
	mu      sync.Mutex
	answers map[[32]byte]answer // sha256(token, verb, path) → the answer, until it expires
}

type answer struct {
	status int
	msg    string
	until  time.Time
}

func newMetricsAuthorizer(cs kubernetes.Interface) *metricsAuthorizer {
	return &metricsAuthorizer{cs: cs, reviews: flowcontrol.NewTokenBucketRateLimiter(metricsReviewsPerSecond, metricsReviewsBurst),
		answers: map[[32]byte]answer{}}
}

// decide answers from memory, or reviews the token and remembers the answer: an allowed caller
// for metricsDecisionTTL, a refused one for metricsRefusalTTL, a failure to reach the API server
// not at all (the next scrape retries).
func (a *metricsAuthorizer) decide(r *http.Request) (int, string) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return http.StatusUnauthorized, "send a ServiceAccount token as a Bearer token"
	}
	verb := strings.ToLower(r.Method)
	key := sha256.Sum256([]byte(token + "\x00" + verb + "\x00" + r.URL.Path))
	now := time.Now()
	a.mu.Lock()
	known, ok := a.answers[key]
	a.mu.Unlock()
	switch {
	case ok && now.Before(known.until):
		return known.status, known.msg
	case !a.reviews.TryAccept():
		return http.StatusTooManyRequests, "too many metrics requests with new tokens; retry shortly"
	}
	status, msg := a.review(r, token, verb)
	ttl := map[int]time.Duration{http.StatusOK: metricsDecisionTTL, http.StatusUnauthorized: metricsRefusalTTL, http.StatusForbidden: metricsRefusalTTL}[status]
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.answers { // a handful of scrapers: pruning on write keeps it small
		if now.After(v.until) {
			delete(a.answers, k)
		}
	}
	if ttl > 0 {
		a.answers[key] = answer{status: status, msg: msg, until: now.Add(ttl)}
	}
	return status, msg
}

// review asks the API server: TokenReview, then SubjectAccessReview.
func (a *metricsAuthorizer) review(r *http.Request, token, verb string) (int, string) {
	ctx := r.Context()
	tr, err := a.cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	switch {
	case err != nil:
		return http.StatusServiceUnavailable, "the token could not be verified with the API server; retry"
	case !tr.Status.Authenticated:
		return http.StatusUnauthorized, "the token was refused"
	}
	user := tr.Status.User
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := a.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: r.URL.Path, Verb: verb},
	}}, metav1.CreateOptions{})
	switch {
	case err != nil:
		return http.StatusServiceUnavailable, "the request could not be authorised with the API server; retry"
	case !sar.Status.Allowed:
		return http.StatusForbidden, "forbidden: " + user.Username + " may not " + verb + " " + r.URL.Path + " (bind the ClusterRole connectors-metrics-reader)"
	}
	return http.StatusOK, ""
}
