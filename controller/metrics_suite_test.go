package controller_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
)

// readySeries reads connectors_connector_ready for one Connector from the registry the
// manager's /metrics serves: reason → value.
func readySeries(t *testing.T, ns, name string) map[string]float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "connectors_connector_ready" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["name"] == name {
				out[labels["reason"]] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// connectors_connector_ready follows a Connector's Ready condition through the reconciler: 0
// with the failing reason, 1 once Ready, and gone when the Connector is deleted.
func TestReadyGaugeFollowsTheConnector(t *testing.T) {
	ns := newNamespace(t)
	c := create(t, newConnector(t, ns, "gauge", "harbor", "http://127.0.0.1:1", ""))
	waitFor(t, c, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonUnreachable)
	require.Eventually(t, func() bool {
		s := readySeries(t, ns, "gauge")
		return len(s) == 1 && s[v1alpha1.ReasonUnreachable] == 0
	}, 10*time.Second, 50*time.Millisecond, "one series, 0, reason Unreachable: %v", readySeries(t, ns, "gauge"))

	var got v1alpha1.Connector
	require.NoError(t, k8s.Get(context.Background(), client.ObjectKeyFromObject(c), &got))
	got.Spec.Address = harbor.URL()
	require.NoError(t, k8s.Update(context.Background(), &got))
	waitFor(t, c, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady)
	require.Eventually(t, func() bool {
		s := readySeries(t, ns, "gauge")
		return len(s) == 1 && s[v1alpha1.ReasonReady] == 1
	}, 10*time.Second, 50*time.Millisecond, "one series, 1, reason Ready: %v", readySeries(t, ns, "gauge"))

	require.NoError(t, k8s.Delete(context.Background(), &got))
	require.Eventually(t, func() bool { return len(readySeries(t, ns, "gauge")) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the series goes with the Connector: %v", readySeries(t, ns, "gauge"))
}
