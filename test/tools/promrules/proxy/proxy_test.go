// Package proxy_test checks the alerts on the proxy's job against the proxy's registry:
// controller-runtime's metrics registry as cmd/proxy fills it (controller-runtime's own metrics
// and those of the packages cmd/proxy imports). A test binary of its own, so the manager's
// metrics are not in it.
package proxy_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	// What cmd/proxy links, and so registers.
	_ "github.com/alauda/harbor-connector/proxyserver"
	_ "github.com/alauda/harbor-connector/proxyserver/identity"
	_ "github.com/alauda/harbor-connector/proxyserver/upstream"
	_ "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/test/tools/promrules"
)

func TestProxyAlertsNameProxyMetrics(t *testing.T) {
	job, selected, missing, err := promrules.CheckBinary(promrules.ProxyService, metrics.Registry)
	require.NoError(t, err)
	require.NotZero(t, selected, "no alert selects job %s", job)
	assert.Empty(t, missing, "alerts name metrics the proxy does not export")
	assert.True(t, promrules.Registered(metrics.Registry, "connectors_proxy_requests_total"))
	assert.False(t, promrules.Registered(metrics.Registry, "connectors_connector_ready"), "the manager's metrics are not the proxy's")
}
