package controller

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
)

// One series per Connector: a new reason replaces the Connector's series (so `== 0` sees the
// current state only), another Connector's series is left alone, and forgetting a Connector
// removes its series.
func TestReadyGaugeKeepsOneSeriesPerConnector(t *testing.T) {
	g := &readyGauge{
		vec:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "connectors_connector_ready", Help: "h"}, []string{"namespace", "name", "reason"}),
		reasons: map[types.NamespacedName]string{},
	}
	a := types.NamespacedName{Namespace: "team-a", Name: "harbor"}
	b := types.NamespacedName{Namespace: "team-b", Name: "harbor"}
	cond := func(status metav1.ConditionStatus, reason string) *metav1.Condition {
		return &metav1.Condition{Type: v1alpha1.ConditionReady, Status: status, Reason: reason}
	}
	expect := func(series ...string) {
		t.Helper()
		want := "# HELP connectors_connector_ready h\n# TYPE connectors_connector_ready gauge\n"
		for _, s := range series {
			want += "connectors_connector_ready" + s + "\n"
		}
		if len(series) == 0 {
			want = ""
		}
		require.NoError(t, testutil.CollectAndCompare(g.vec, strings.NewReader(want)))
	}

	g.set(a, cond(metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound))
	g.set(b, cond(metav1.ConditionTrue, v1alpha1.ReasonReady))
	expect(`{name="harbor",namespace="team-a",reason="SecretNotFound"} 0`, `{name="harbor",namespace="team-b",reason="Ready"} 1`)

	g.set(a, cond(metav1.ConditionFalse, v1alpha1.ReasonUnauthorized))
	expect(`{name="harbor",namespace="team-a",reason="Unauthorized"} 0`, `{name="harbor",namespace="team-b",reason="Ready"} 1`)

	g.set(a, cond(metav1.ConditionTrue, v1alpha1.ReasonReady))
	g.set(a, cond(metav1.ConditionTrue, v1alpha1.ReasonReady))
	expect(`{name="harbor",namespace="team-a",reason="Ready"} 1`, `{name="harbor",namespace="team-b",reason="Ready"} 1`)

	g.set(b, nil)
	expect(`{name="harbor",namespace="team-a",reason="Ready"} 1`)
	g.set(a, nil)
	g.set(a, nil)
	expect()
}
