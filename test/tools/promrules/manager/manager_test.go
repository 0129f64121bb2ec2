// Package manager_test checks the alerts on the manager's job against the manager's registry:
// controller-runtime's metrics registry as cmd/manager fills it (its own reconcile, work queue,
// client, webhook, certificate-watcher, leader-election, Go and process metrics, and the
// packages cmd/manager imports). A test binary of its own, so the proxy's metrics are not in it.
package manager_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	// What cmd/manager links, and so registers.
	_ "github.com/alauda/harbor-connector/controller"
	_ "github.com/alauda/harbor-connector/webhook"
	_ "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/test/tools/promrules"
)

func TestManagerAlertsNameManagerMetrics(t *testing.T) {
	job, selected, missing, err := promrules.CheckBinary(promrules.ManagerService, metrics.Registry)
	require.NoError(t, err)
	require.NotZero(t, selected, "no alert selects job %s", job)
	assert.Empty(t, missing, "alerts name metrics the manager does not export")
	assert.True(t, promrules.Registered(metrics.Registry, "connectors_connector_ready"))
	assert.False(t, promrules.Registered(metrics.Registry, "connectors_proxy_requests_total"), "the proxy's metrics are not the manager's")
}
