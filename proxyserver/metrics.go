package proxyserver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_proxy_requests_total",
		Help: "Registry requests through the proxy by operation and status code.",
	}, []string{"op", "code"})
	bytesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_proxy_bytes_total",
		Help: "Body bytes relayed, by direction: up (client to registry) or down.",
	}, []string{"direction"})
	tokenCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_proxy_token_cache_total",
		Help: "Upstream credentials by result: hit (cached) or fetch.",
	}, []string{"result"})
	upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_proxy_upstream_errors_total",
		Help: "Failures talking to registries, by reason.",
	}, []string{"reason"})
	// liveReads counts reads of pods and connectors from the API server on a cache miss
	// (LiveReads): made, or limited (refused by the rate limit).
	liveReads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_proxy_live_reads_total",
		Help: "Reads of pods and connectors from the API server after a miss in the proxy's caches, by result: made or limited.",
	}, []string{"result"})
	// nodePulls counts the node listeners' pulls by how they were authorised (README "Per-pod
	// pulls"): identity "pod" (the pulling pod's own token) or "node" (any marked pod on the
	// node), and whether the rule allowed them.
	nodePulls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_proxy_node_pulls_total",
		Help: "Requests relayed by node pull listeners, by pull identity (pod or node) and whether they were allowed.",
	}, []string{"identity", "allowed"})
	// decisionSeconds times the decisions the proxy makes from its index of marked pods before a
	// request goes anywhere (README "Scale"): "node-pull" (NodePulls.Authorize, both identities)
	// and "pod-address" (the pod behind a forward caller's address, the wait for an address the
	// index does not hold yet included). A live read after a miss shows in the upper buckets.
	decisionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "connectors_proxy_decision_seconds",
		Help:    "Time to decide a node pull or to find the pod behind a forward caller's address, by decision.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 2.5},
	}, []string{"decision"})
	activeStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "connectors_proxy_active_streams",
		Help: "Requests being relayed right now.",
	})
	// certificateExpiry is when the serving certificate the TLS listeners present expires, set
	// at every (re)load: it stays low when cert-manager did not renew or the proxy did not reload.
	certificateExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "connectors_proxy_certificate_expiration_timestamp_seconds",
		Help: "Expiry (Unix seconds) of the serving certificate the proxy's TLS listeners present, updated when the files are reloaded.",
	})
)

// observeDecision records the time since start of one decision.
func observeDecision(decision string, start time.Time) {
	decisionSeconds.WithLabelValues(decision).Observe(time.Since(start).Seconds())
}

func init() {
	metrics.Registry.MustRegister(requestsTotal, bytesTotal, tokenCache, upstreamErrors, liveReads, nodePulls, decisionSeconds, activeStreams, certificateExpiry)
}
