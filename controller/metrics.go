package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// probeResults counts probe outcomes by class, condition and reason, e.g.
	// connectors_probe_results_total{class="harbor",condition="AuthReady",reason="Unauthorized"}.
	probeResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_probe_results_total",
		Help: "Connector checks by class, condition and reason.",
	}, []string{"class", "condition", "reason"})

	// probeDuration is how long one Connector's registry probes (liveness and auth) took.
	probeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "connectors_probe_duration_seconds",
		Help:    "Duration of a Connector's registry probes (liveness and auth together).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"class"})
)

func init() {
	metrics.Registry.MustRegister(probeResults, probeDuration)
}
