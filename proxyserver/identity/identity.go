// Package identity tells who is calling the proxy: a Kubernetes ServiceAccount token, verified
// with TokenReview for the proxy's audience, cached by the token's hash.
package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/alauda/harbor-connector/policies"
)

// DefaultAudience is the audience tokens for the proxy are issued for.
const DefaultAudience = policies.DefaultAudience

// Extra keys the API server puts on pod-bound tokens' TokenReview.
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraNodeName = "authentication.kubernetes.io/node-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
)

// Identity is a verified caller.
type Identity struct {
	Namespace      string
	ServiceAccount string
	PodName        string // set for pod-bound tokens
	PodUID         string // set for pod-bound tokens
	NodeName       string // set for pod-bound tokens on API servers that record it
}

// String is "<namespace>/<serviceaccount>", the form audit lines use.
func (i Identity) String() string { return i.Namespace + "/" + i.ServiceAccount }

// ErrNoCredential means the request carried no token.
var ErrNoCredential = errors.New("no credential")

// Unauthenticated is a token the API server did not accept; Reason says why.
type Unauthenticated struct{ Reason string }

func (e *Unauthenticated) Error() string { return "token not accepted: " + e.Reason }

// TokenFromRequest extracts the ServiceAccount token from Authorization: Basic (any username,
// the token as password, as Docker-style clients send from config.json) or Bearer.
func TokenFromRequest(r *http.Request) (string, error) {
	return TokenFromHeader(r.Header.Get("Authorization"), r)
}

// TokenFromHeader reads a token from an Authorization or Proxy-Authorization value.
func TokenFromHeader(value string, r *http.Request) (string, error) {
	if value == "" {
		return "", ErrNoCredential
	}
	scheme, rest, _ := strings.Cut(value, " ")
	switch strings.ToLower(scheme) {
	case "bearer":
		if rest = strings.TrimSpace(rest); rest != "" {
			return rest, nil
		}
	case "basic":
		probe := &http.Request{Header: http.Header{"Authorization": {value}}}
		if _, password, ok := probe.BasicAuth(); ok && password != "" {
			return password, nil
		}
	}
	return "", ErrNoCredential
}

// Reviewer verifies tokens with TokenReview and caches the answers: accepted tokens until
// shortly before they expire (at most PositiveTTL), refused ones for NegativeTTL.
type Reviewer struct {
	Client      kubernetes.Interface
	Audiences   []string
	PositiveTTL time.Duration
	NegativeTTL time.Duration
	// MaxEntries bounds the cache; beyond it, expired entries are dropped first, then all.
	MaxEntries int

	now   func() time.Time
	mu    sync.Mutex
	cache map[[32]byte]entry
	group singleflight.Group
}

type entry struct {
	id      Identity
	err     error
	expires time.Time
}

var (
	reviewDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "connectors_proxy_tokenreview_duration_seconds",
		Help:    "Latency of TokenReview calls made to identify callers.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	reviewCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_proxy_tokenreview_cache_total",
		Help: "Caller identifications by result: hit (cached) or review (TokenReview sent).",
	}, []string{"result"})
)

func init() { metrics.Registry.MustRegister(reviewDuration, reviewCache) }

// Review returns the identity behind a token.
func (r *Reviewer) Review(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	if e, ok := r.lookup(key); ok {
		reviewCache.WithLabelValues("hit").Inc()
		return e.id, e.err
	}
	v, _, _ := r.group.Do(string(key[:]), func() (any, error) {
		reviewCache.WithLabelValues("review").Inc()
		e := r.review(ctx, token)
		r.store(key, e)
		return e, nil
	})
	e := v.(entry)
	return e.id, e.err
}

func (r *Reviewer) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

func (r *Reviewer) lookup(key [32]byte) (entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.cache[key]
	if !ok || !r.clock().Before(e.expires) {
		return entry{}, false
	}
	return e, true
}

func (r *Reviewer) store(key [32]byte, e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil {
		r.cache = map[[32]byte]entry{}
	}
	max := r.MaxEntries
	if max == 0 {
		max = 10000
	}
	if len(r.cache) >= max {
		now := r.clock()
		for k, v := range r.cache {
			if !now.Before(v.expires) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= max {
			r.cache = map[[32]byte]entry{}
		}
	}
	r.cache[key] = e
}

func (r *Reviewer) review(ctx context.Context, token string) entry {
	now := r.clock()
	negative := entry{expires: now.Add(r.NegativeTTL)}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	tr, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: r.Audiences},
	}, metav1.CreateOptions{})
	reviewDuration.Observe(time.Since(started).Seconds())
	if err != nil {
		// Not cached: an API server hiccup must not lock a caller out.
		return entry{err: fmt.Errorf("TokenReview failed: %w", err)}
	}
	if !tr.Status.Authenticated {
		reason := tr.Status.Error
		if reason == "" {
			reason = "the API server did not authenticate the token"
		}
		negative.err = &Unauthenticated{Reason: reason}
		return negative
	}
	if !audienceMatches(tr.Status.Audiences, r.Audiences) {
		negative.err = &Unauthenticated{Reason: fmt.Sprintf("the token is not for audience %v", r.Audiences)}
		return negative
	}
	ns, sa, ok := serviceAccount(tr.Status.User.Username)
	if !ok {
		negative.err = &Unauthenticated{Reason: fmt.Sprintf("%q is not a ServiceAccount: only ServiceAccount tokens identify workloads", tr.Status.User.Username)}
		return negative
	}
	id := Identity{Namespace: ns, ServiceAccount: sa, PodName: first(tr.Status.User.Extra[extraPodName]), PodUID: first(tr.Status.User.Extra[extraPodUID]), NodeName: first(tr.Status.User.Extra[extraNodeName])}
	ttl := r.PositiveTTL
	if exp, ok := policies.TokenExpiry(token); ok && exp.Sub(now) < ttl {
		ttl = exp.Sub(now)
	}
	return entry{id: id, expires: now.Add(ttl)}
}

func audienceMatches(got, want []string) bool {
	if len(want) == 0 {
		return true
	}
	for _, g := range got {
		for _, w := range want {
			if g == w {
				return true
			}
		}
	}
	return false
}

// serviceAccount splits system:serviceaccount:<ns>:<name>.
func serviceAccount(username string) (ns, name string, ok bool) {
	parts := strings.Split(username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[2], parts[3], true
}

func first(v authenticationv1.ExtraValue) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
