package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// apiRequests counts the proxy's requests to the API server by verb and resource (watches, which
// feed the informers, are not counted: they are not made per request).
type apiRequests struct {
	mu     sync.Mutex
	counts map[string]int
}

// proxyAPI counts the suite's proxy's API requests (its rest.Config is wrapped in TestMain).
var proxyAPI = &apiRequests{counts: map[string]int{}}

func (a *apiRequests) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.URL.Query().Get("watch") != "true" {
			a.mu.Lock()
			a.counts[r.Method+" "+apiResource(r.URL.Path)]++
			a.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

func (a *apiRequests) snapshot() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.counts {
		out[k] = v
	}
	return out
}

// since is what was counted after before.
func (a *apiRequests) since(before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range a.snapshot() {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// apiResource is the resource of an API path: /api/v1/namespaces/a/pods/x -> pods.
func apiResource(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	// Skip the group prefix: api/v1 or apis/<group>/<version>.
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return "namespaces"
	}
	return parts[0]
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The hot path reads informer caches: a burst of pulls through a node listener, justified and
// not, of reverse requests and of forward identifications by address costs no API request per
// request; the
// only ones allowed are the bounded live reads after a cache miss (the token bucket's burst of
// 10 plus 5 per second for pods) and one TokenReview per distinct token.
func TestHotPathMakesNoAPIRequestsPerRequest(t *testing.T) {
	ctx := context.Background()
	pushSample(t, "hotpath")
	l := startNodeListener(t, proxyAddr)
	image := l.image(nsA, "harbor", "hotpath")
	app := workloadPod(t, nsA, nodeName, nsA+"/harbor", image)
	require.NoError(t, waitProxyHasPod(ctx, app, nil))
	token := saToken(t, nsA)
	client := httpClient()
	head := func(url, auth string) int {
		req, _ := http.NewRequest(http.MethodHead, url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		req.Header.Set("Accept", manifestTypes)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	nodeURL := func(repo string) string {
		return "http://" + l.addr + "/v2/namespaces/team-a/connectors/harbor/team/" + repo + "/manifests/v1"
	}
	reverseURL := "https://" + proxyAddr + "/v2/namespaces/team-a/connectors/harbor/team/hotpath/manifests/v1"
	// Forward identification by source address: a CONNECT on a new connection from a marked
	// pod's address, to a private address the tunnel policy then refuses (after identifying it).
	markedPod(t, nsA, "hotpath-forward", "127.0.0.61", nsA+"/harbor", false, true)
	connect := func() string {
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.61")}}).Dial("tcp", forwardAddr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.Status
	}
	// Warm: one of each, so the token reviews and the upstream token are cached.
	require.Equal(t, http.StatusOK, head(nodeURL("hotpath"), ""))
	require.Equal(t, http.StatusOK, head(reverseURL, basic(token)))
	identified := connect()
	require.NotContains(t, identified, "407", "the marked pod's address identifies it")

	const burst = 200
	before := proxyAPI.snapshot()
	start := time.Now()
	statuses := map[string]int{}
	for i := 0; i < burst; i++ {
		statuses[fmt.Sprint("node ", head(nodeURL("hotpath"), ""))]++
		statuses[fmt.Sprint("reverse ", head(reverseURL, basic(token)))]++
		// A repository no pod on the node names: every one misses the cache.
		statuses[fmt.Sprint("unjustified ", head(nodeURL(fmt.Sprintf("nobody-%d", i)), ""))]++
		statuses["forward "+connect()]++
	}
	elapsed := time.Since(start)
	made := proxyAPI.since(before)
	t.Logf("%d x 4 requests in %s: API requests %v, answers %v", burst, elapsed.Round(time.Millisecond), made, statuses)
	assert.Equal(t, burst, statuses["node 200"])
	assert.Equal(t, burst, statuses["reverse 200"])
	assert.Equal(t, burst, statuses["unjustified 403"])
	assert.Equal(t, burst, statuses["forward "+identified], "every CONNECT identified the same way")
	bound := 10 + int(5*elapsed.Seconds()+1)
	assert.LessOrEqual(t, made["GET pods"], bound, "live pod reads are bounded by their token bucket")
	for req, n := range made {
		if req != "GET pods" {
			assert.Failf(t, "an API request on the hot path", "%s x %d during the burst (all: %v)", req, n, made)
		}
	}
}
