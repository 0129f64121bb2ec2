package controller

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

	// connectorReady is what the Ready condition of each Connector says, e.g.
	// connectors_connector_ready{namespace="team-a",name="harbor",reason="Unauthorized"} 0: one
	// series per Connector, written with its status and removed with it. Only the elected
	// controller reconciles, so only the leader exports it (alerts aggregate over replicas).
	connectorReady = &readyGauge{
		vec: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "connectors_connector_ready",
			Help: "1 when the Connector's Ready condition is True, 0 when it is not; reason is the Ready condition's reason.",
		}, []string{"namespace", "name", "reason"}),
		reasons: map[types.NamespacedName]string{},
	}
)

func init() {
	metrics.Registry.MustRegister(probeResults, probeDuration, connectorReady.vec)
}

// readyGauge keeps one series per Connector: a new reason replaces the old series rather than
// adding one, so an alert on the value sees exactly the current state.
type readyGauge struct {
	vec     *prometheus.GaugeVec
	mu      sync.Mutex
	reasons map[types.NamespacedName]string // the reason label each Connector's series carries
}

// set records the Ready condition of the Connector key; nil forgets the Connector.
func (g *readyGauge) set(key types.NamespacedName, ready *metav1.Condition) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if old, ok := g.reasons[key]; ok && (ready == nil || old != ready.Reason) {
		g.vec.DeleteLabelValues(key.Namespace, key.Name, old)
		delete(g.reasons, key)
	}
	if ready == nil {
		return
	}
	value := 0.0
	if ready.Status == metav1.ConditionTrue {
		value = 1
	}
	g.vec.WithLabelValues(key.Namespace, key.Name, ready.Reason).Set(value)
	g.reasons[key] = ready.Reason
}
