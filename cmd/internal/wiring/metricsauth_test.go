package wiring

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// apiServer answers TokenReviews (only "good" and "reader" authenticate) and
// SubjectAccessReviews (only "reader" may get /metrics), counting both.
func apiServer() (*fake.Clientset, *atomic.Int32) {
	cs := fake.NewClientset()
	var reviews atomic.Int32
	cs.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		reviews.Add(1)
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		switch tr.Spec.Token {
		case "good", "reader":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: tr.Spec.Token}}
		}
		return true, tr, nil
	})
	cs.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		reviews.Add(1)
		sar := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		sar.Status.Allowed = sar.Spec.User == "reader"
		return true, sar, nil
	})
	return cs, &reviews
}

func scrape(a *metricsAuthorizer, token string) int {
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	status, _ := a.decide(r)
	return status
}

// Answers are remembered: an allowed scraper and a refused one (wrong token, or no binding)
// each cost the API server one review round, not one per scrape.
func TestMetricsAuthRemembersAnswers(t *testing.T) {
	cs, reviews := apiServer()
	a := newMetricsAuthorizer(cs)
	for _, c := range []struct {
		token   string
		status  int
		reviews int32 // API requests for the first scrape
	}{
		{"reader", http.StatusOK, 2},
		{"good", http.StatusForbidden, 2},
		{"wrong", http.StatusUnauthorized, 1},
	} {
		before := reviews.Load()
		for range 5 {
			assert.Equal(t, c.status, scrape(a, c.token), c.token)
		}
		assert.Equal(t, c.reviews, reviews.Load()-before, "%s: five scrapes, one review round", c.token)
	}
}

// Requests with ever new tokens cost the API server a bounded number of reviews: past the
// bucket's burst they are answered 429 without one.
func TestMetricsAuthBoundsReviewsOfNewTokens(t *testing.T) {
	cs, reviews := apiServer()
	a := newMetricsAuthorizer(cs)
	limited := 0
	for i := range 100 {
		if scrape(a, fmt.Sprintf("forged-%d", i)) == http.StatusTooManyRequests {
			limited++
		}
	}
	assert.LessOrEqual(t, reviews.Load(), int32(metricsReviewsBurst+metricsReviewsPerSecond), "TokenReviews for 100 new tokens")
	assert.GreaterOrEqual(t, limited, 100-metricsReviewsBurst-metricsReviewsPerSecond)
	// The bucket refills at metricsReviewsPerSecond: a real scraper gets through within a second.
	assert.Eventually(t, func() bool { return scrape(a, "reader") == http.StatusOK }, 2*time.Second, 50*time.Millisecond)
}
