package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Admission results (bounded label values).
const (
	resultMutated   = "mutated"   // a patch was returned
	resultUnchanged = "unchanged" // already in the desired state: empty patch
	resultSkipped   = "skipped"   // not ours to mutate (see skip reasons)
	resultDenied    = "denied"    // refused with a message
	resultErrored   = "errored"   // an internal error: failurePolicy applies
)

var (
	admissions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_webhook_admissions_total",
		Help: "Admission requests by kind, operation and result (mutated, unchanged, skipped, denied, errored).",
	}, []string{"kind", "operation", "result"})
	skips = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_webhook_skips_total",
		Help: "Objects or containers left alone, by reason.",
	}, []string{"reason"})
	imageRewrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connectors_webhook_image_rewrites_total",
		Help: "Container images rewritten to the pull host, by kind.",
	}, []string{"kind"})
	lookupMisses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "connectors_webhook_cache_misses_total",
		Help: "Lookups not found in the informer cache and read live from the API server.",
	})
	// certificateExpiry is when the serving certificate the webhook presents expires, set at
	// every (re)load: it stays low when cert-manager did not renew or the manager did not reload.
	certificateExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "connectors_webhook_certificate_expiration_timestamp_seconds",
		Help: "Expiry (Unix seconds) of the serving certificate the admission webhook presents, updated when the files are reloaded.",
	})
)

func init() {
	metrics.Registry.MustRegister(admissions, skips, imageRewrites, lookupMisses, certificateExpiry)
}
