package upstream

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var tokenFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "connectors_proxy_token_fetches_total",
	Help: "Bearer tokens fetched from registries' token services, by connector.",
}, []string{"connector"})

func init() { metrics.Registry.MustRegister(tokenFetches) }
