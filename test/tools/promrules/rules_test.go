package promrules_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/alauda/harbor-connector/test/tools/promrules"
)

func load(t *testing.T) (string, *promrules.PrometheusRule) {
	t.Helper()
	root, err := promrules.RepoRoot()
	require.NoError(t, err)
	rule, err := promrules.Load(filepath.Join(root, promrules.RulesFile))
	require.NoError(t, err, "Prometheus's rule parser refuses the rules")
	return root, rule
}

// The rules are a PrometheusRule Prometheus accepts (every expr and template parses), and each
// alert is actionable: it waits (`for`), carries a severity, and says what happened (summary)
// and what to check (description).
func TestRulesAreValidAndActionable(t *testing.T) {
	_, rule := load(t)
	assert.Equal(t, "monitoring.coreos.com/v1", rule.APIVersion)
	assert.Equal(t, "PrometheusRule", rule.Kind)
	assert.Equal(t, "connectors-alerts", rule.Name)
	assert.Equal(t, "connectors-system", rule.Namespace)
	alerts := map[string]bool{}
	for _, g := range rule.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "recording rule %s: this file holds alerts only", r.Record)
			assert.False(t, alerts[r.Alert], "alert %s defined twice", r.Alert)
			alerts[r.Alert] = true
			assert.NotZero(t, r.For, "%s: a `for` keeps a blip from paging", r.Alert)
			assert.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], "%s: severity", r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], "%s: summary", r.Alert)
			assert.Contains(t, strings.ToLower(r.Annotations["description"]), "check", "%s: the description says what to check", r.Alert)
		}
	}
	for _, want := range []string{"ConnectorsManagerDown", "ConnectorsProxyDown", "ConnectorNotReady", "ConnectorsProxyUpstreamErrors",
		"ConnectorsProxyHighErrorRate", "ConnectorsWebhookErrors", "ConnectorsWebhookDenialsSpike", "ConnectorsCertificateExpiresSoon"} {
		assert.True(t, alerts[want], "alert %s", want)
	}
}

// Every series selector names the job of one of the product's metrics Services, so it selects
// the product's targets only and the binary whose registry the manager and proxy tests check.
func TestEverySelectorNamesAProductJob(t *testing.T) {
	root, rule := load(t)
	sels, err := promrules.Selectors(rule)
	require.NoError(t, err)
	require.NotEmpty(t, sels)
	var jobs []string
	for _, f := range []string{promrules.ManagerService, promrules.ProxyService} {
		job, err := promrules.ServiceName(root, f)
		require.NoError(t, err)
		jobs = append(jobs, job)
	}
	for _, s := range sels {
		require.True(t, s.HasJob(), "alert %s: %s selects no job", s.Rule, s.Text)
		selected := false
		for _, job := range jobs {
			selected = selected || s.Selects(job)
		}
		assert.True(t, selected, "alert %s: %s selects none of the product's jobs %v", s.Rule, s.Text, jobs)
	}
}

// The checks themselves: a metric the registry lacks is reported, with its alert; a registered
// counter, a histogram's series, `up` and other jobs' selectors are not; an expr Prometheus cannot
// parse is refused when the file is loaded.
func TestChecksCatchUnknownMetricsAndBadExprs(t *testing.T) {
	reg := prom.NewRegistry()
	reg.MustRegister(
		prom.NewCounterVec(prom.CounterOpts{Name: "connectors_known_total", Help: "h"}, []string{"reason"}),
		prom.NewHistogramVec(prom.HistogramOpts{Name: "connectors_latency_seconds", Help: "h"}, []string{"op"}),
	)
	dir := t.TempDir()
	write := func(expr string) string {
		path := filepath.Join(dir, "rules.yaml")
		require.NoError(t, os.WriteFile(path, []byte(`apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: r, namespace: ns}
spec:
  groups:
  - name: g
    rules:
    - alert: A
      expr: '`+expr+`'
      for: 1m
`), 0o600))
		return path
	}
	rule, err := promrules.Load(write(`rate(connectors_known_total{job="j"}[5m]) > 0 or histogram_quantile(0.9, rate(connectors_latency_seconds_bucket{job="j"}[5m])) > 1 or absent(up{job="j"}) or connectors_typo_total{job="j"} > 0 or connectors_elsewhere{job="other"} > 0`))
	require.NoError(t, err)
	sels, err := promrules.Selectors(rule)
	require.NoError(t, err)
	assert.Equal(t, []string{`alert A: connectors_typo_total{job="j"}: no metric "connectors_typo_total" in the j registry`}, promrules.Unregistered(sels, "j", reg))
	assert.True(t, promrules.Registered(reg, "connectors_known_total"))
	assert.False(t, promrules.Registered(reg, "connectors_typo_total"), "the probe leaves nothing registered")
	assert.False(t, promrules.Registered(reg, "connectors_typo_total"))

	_, err = promrules.Load(write(`sum(rate(connectors_known_total[5m]) > 0`))
	assert.ErrorContains(t, err, "unclosed left parenthesis")
}
