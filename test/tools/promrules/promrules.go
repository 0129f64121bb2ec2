// Package promrules checks the product's Prometheus alerting rules (config/prometheus/rules.yaml)
// with Prometheus's own rule parser (what promtool and the Prometheus Operator's admission use),
// and checks every metric an expression names against the registry of the binary its `job`
// selects. It is a module of its own, so github.com/prometheus/prometheus stays out of the
// product's go.mod; it imports the product through a replace directive.
package promrules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// RulesFile is the PrometheusRule, relative to the repository root.
const RulesFile = "config/prometheus/rules.yaml"

// The product's metrics Services. The Prometheus Operator names a ServiceMonitor's job after the
// Service, so these are the `job` values the rules select.
const (
	ManagerService = "config/manager/metrics_service.yaml"
	ProxyService   = "config/proxy/metrics_service.yaml"
)

// synthetic are the series Prometheus writes itself for every target: no product registers them.
var synthetic = map[string]bool{"up": true}

// RepoRoot is the product repository holding this module: the first parent with RulesFile.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, RulesFile)); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no " + RulesFile + " above the working directory")
		}
		dir = parent
	}
}

// PrometheusRule is the rule resource: its metadata and its groups as Prometheus reads them.
type PrometheusRule struct {
	APIVersion, Kind, Name, Namespace string
	Labels                            map[string]string
	Groups                            []rulefmt.RuleGroup
}

// Load reads a PrometheusRule and validates its groups with Prometheus's rule parser: every expr
// parses, every template in labels and annotations parses, names are valid, no field is unknown.
func Load(path string) (*PrometheusRule, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name      string            `yaml:"name"`
			Namespace string            `yaml:"namespace"`
			Labels    map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec yaml.Node `yaml:"spec"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	spec, err := yaml.Marshal(&doc.Spec) // {groups: [...]}: a Prometheus rule file
	if err != nil {
		return nil, err
	}
	groups, errs := rulefmt.Parse(spec, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", path, errors.Join(errs...))
	}
	return &PrometheusRule{APIVersion: doc.APIVersion, Kind: doc.Kind, Name: doc.Metadata.Name, Namespace: doc.Metadata.Namespace,
		Labels: doc.Metadata.Labels, Groups: groups.Groups}, nil
}

// Selector is one series selector of a rule's expression.
type Selector struct {
	Rule   string // the alert (or recording rule) it belongs to
	Metric string
	Text   string            // the selector as written, for messages
	job    []*labels.Matcher // its matchers on job
}

// Selects reports whether the selector's job matchers admit job.
func (s Selector) Selects(job string) bool {
	for _, m := range s.job {
		if !m.Matches(job) {
			return false
		}
	}
	return true
}

// HasJob reports whether the selector names a job at all.
func (s Selector) HasJob() bool { return len(s.job) > 0 }

// Selectors parses every rule's expression and returns its series selectors.
func Selectors(rule *PrometheusRule) ([]Selector, error) {
	p := parser.NewParser(parser.Options{})
	var out []Selector
	for _, g := range rule.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				return nil, fmt.Errorf("rule %s: %w", name, err)
			}
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				vs, ok := node.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				s := Selector{Rule: name, Metric: vs.Name, Text: vs.String()}
				for _, m := range vs.LabelMatchers {
					switch m.Name {
					case labels.MetricName:
						if m.Type == labels.MatchEqual {
							s.Metric = m.Value
						}
					case "job":
						s.job = append(s.job, m)
					}
				}
				out = append(out, s)
				return nil
			})
		}
	}
	return out, nil
}

// Registered reports whether reg holds a collector describing a metric named name. A registry
// refuses a second descriptor of a name it holds unless its help and labels are identical, so a
// probe with a help string no product metric has is refused exactly when the name is taken. This
// also finds vectors that have no series yet, which Gather (a scrape) does not show.
func Registered(reg prom.Registerer, name string) bool {
	if !model.LegacyValidation.IsValidMetricName(name) {
		return false
	}
	probe := prom.NewGauge(prom.GaugeOpts{Name: name, Help: "promrules probe for " + name})
	if err := reg.Register(probe); err != nil {
		return true
	}
	reg.Unregister(probe)
	return false
}

// seriesSuffixes are the names a histogram or summary's series add to the registered name.
var seriesSuffixes = []string{"_bucket", "_sum", "_count"}

// Unregistered returns the selectors of job whose metric reg does not register (a histogram's
// _bucket, _sum and _count series count as its name's), and that Prometheus does not write
// itself: each names a metric the binary behind job never exports.
func Unregistered(selectors []Selector, job string, reg prom.Registerer) []string {
	var missing []string
	for _, s := range selectors {
		if !s.Selects(job) || synthetic[s.Metric] {
			continue
		}
		ok := s.Metric != "" && Registered(reg, s.Metric)
		for _, suffix := range seriesSuffixes {
			if base, cut := strings.CutSuffix(s.Metric, suffix); cut && !ok {
				ok = Registered(reg, base)
			}
		}
		if !ok {
			missing = append(missing, fmt.Sprintf("alert %s: %s: no metric %q in the %s registry", s.Rule, s.Text, s.Metric, job))
		}
	}
	sort.Strings(missing)
	return missing
}

// ServiceName reads metadata.name of a Service manifest (relative to root).
func ServiceName(root, file string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return "", err
	}
	var svc struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	if err := yaml.Unmarshal(raw, &svc); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	if svc.Kind != "Service" || svc.Metadata.Name == "" {
		return "", fmt.Errorf("%s: want a Service with a name", file)
	}
	return svc.Metadata.Name, nil
}

// CheckBinary loads the rules from the repository root and checks the selectors of the job of
// one binary's metrics Service (serviceFile, e.g. ManagerService) against that binary's
// registry. It returns the job, how many selectors select it, and the selectors whose metric the
// registry lacks.
func CheckBinary(serviceFile string, reg prom.Registerer) (job string, selected int, missing []string, err error) {
	root, err := RepoRoot()
	if err != nil {
		return "", 0, nil, err
	}
	rule, err := Load(filepath.Join(root, RulesFile))
	if err != nil {
		return "", 0, nil, err
	}
	sels, err := Selectors(rule)
	if err != nil {
		return "", 0, nil, err
	}
	if job, err = ServiceName(root, serviceFile); err != nil {
		return "", 0, nil, err
	}
	for _, s := range sels {
		if s.Selects(job) {
			selected++
		}
	}
	return job, selected, Unregistered(sels, job, reg), nil
}
