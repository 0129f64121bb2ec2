package main

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

// The install's three namespaces (config/default/namespace.yaml) and the values naming them.
const (
	systemNamespace      = "connectors-system"
	nodeNamespace        = "connectors-node"
	credentialsNamespace = "connectors-credentials"
)

var namespaceValues = []struct{ name, value string }{
	{systemNamespace, ".Values.namespaces.system"},
	{nodeNamespace, ".Values.namespaces.node"},
	{credentialsNamespace, ".Values.namespaces.credentials"},
}

// metadataNameLabel is the label the API server sets on every Namespace to its name: a
// selector on it names a namespace.
const metadataNameLabel = "kubernetes.io/metadata.name"

// workload is a Deployment or DaemonSet of the install and the key its values go under
// (priorityClassNames.<key>; resources are keyed by container, images by image name).
type workload struct {
	id  string // kind/name
	key string
}

// workloads are every pod-running object the install has; the generator refuses a render with
// another, so a new one gets its values here.
var workloads = []workload{
	{"Deployment/connectors-manager", "manager"},
	{"Deployment/connectors-proxy", "proxy"},
	{"DaemonSet/connectors-node", "nodePull"},
	{"DaemonSet/connectors-csi", "csiDriver"},
}

// podKinds are the kinds with a pod template (spec.template).
var podKinds = map[string]bool{"Deployment": true, "DaemonSet": true, "StatefulSet": true, "ReplicaSet": true, "Job": true}

// nodePullDeployed is true while the node pull listener is installed: nodePull.mode node, the
// only per-node mode today (a later per-pod mode gets its own value).
const nodePullDeployed = `eq .Values.nodePull.mode "node"`

// nodePullObjects belong to the node pull listener alone, and nodePull.mode=disabled leaves
// them out: its DaemonSet, its ServiceAccount and the NetworkPolicy that admits its relays
// (from node addresses) to the proxy. Everything else stays, the proxy-ca Bundle and the
// connectors-node namespace included (the CSI driver uses both).
var nodePullObjects = []string{
	"DaemonSet/connectors-node",
	"ServiceAccount/connectors-node",
	"NetworkPolicy/connectors-proxy-from-nodes",
}

// nodePullFlags are the flags of other binaries that name the node pull listener: disabled,
// their value is empty (the proxy's --node-forwarders= accepts no node pulls).
var nodePullFlags = []string{"--node-forwarders="}

// monitoringKinds are the Prometheus Operator objects config/prometheus holds, each rendered
// when metrics.<key>.enabled.
var monitoringKinds = map[string]string{
	"ServiceMonitor": "serviceMonitor",
	"PrometheusRule": "prometheusRule",
}

// kubeletDirEnv is the CSI driver's environment variable holding the kubelet root directory
// (config/kubelet-root derives it and every path below it from config/default/kubelet-root.yaml).
const kubeletDirEnv = "KUBELET_DIR"

// Source is what a chart is generated from.
type Source struct {
	Install    []object // the kustomize render of the install (config/default or an overlay)
	Prometheus []object // the kustomize render of config/prometheus
	Version    string   // the product version: appVersion, and the chart's version without "v"
	From       string   // the kustomization the install was rendered from (named in the files)
}

// Chart is a generated chart: each file's path below the chart's folder and its content.
type Chart map[string]string

// values are the defaults the render gave, collected while templating.
type values struct {
	images         map[string]string
	imageOrder     []string
	kubeletRoot    string
	priorityClass  map[string]string
	resources      map[string]any
	resourcesOrder []string
	monitoring     map[string]bool // kinds config/prometheus renders, by value key
}

// generator holds one generation's state.
type generator struct {
	src  Source
	t    templater
	vals values
}

// Generate templates every object of the install and of config/prometheus and writes the chart.
func Generate(src Source) (Chart, error) {
	g := &generator{src: src, vals: values{
		images: map[string]string{}, priorityClass: map[string]string{},
		resources: map[string]any{}, monitoring: map[string]bool{},
	}}
	if err := g.check(); err != nil {
		return nil, err
	}
	root, err := kubeletRoot(src.Install)
	if err != nil {
		return nil, err
	}
	g.vals.kubeletRoot = root
	chart := Chart{}
	names := map[string]int{}
	objs := append(append([]object{}, src.Install...), src.Prometheus...)
	for _, obj := range objs {
		names[strings.ToLower(obj.kind()+"-"+obj.name())]++
	}
	for i, obj := range objs {
		text, err := g.template(obj, i >= len(src.Install))
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", obj.kind(), obj.namespace(), obj.name(), err)
		}
		file := strings.ToLower(obj.kind() + "-" + obj.name())
		if names[file] > 1 {
			file += "-" + obj.namespace()
		}
		chart[path.Join("templates", file+".yaml")] = text
	}
	chart["Chart.yaml"] = g.chartYAML()
	chart["values.yaml"] = g.valuesYAML()
	schema, err := g.valuesSchema()
	if err != nil {
		return nil, err
	}
	chart["values.schema.json"] = schema
	chart["templates/_helpers.tpl"] = g.helpers()
	chart["templates/NOTES.txt"] = notes
	return chart, nil
}

// check refuses a render the tables above no longer describe, so a renamed or new object gets a
// decision instead of a silent default.
func (g *generator) check() error {
	ids := map[string]bool{}
	for _, obj := range g.src.Install {
		ids[obj.id()] = true
		if podKinds[obj.kind()] && workloadKey(obj.id()) == "" {
			return fmt.Errorf("%s runs pods but is not in the generator's workloads: give it a values key", obj.id())
		}
		if _, ok := monitoringKinds[obj.kind()]; ok {
			return fmt.Errorf("%s is in %s: render it from config/prometheus, where metrics.* values switch it", obj.id(), g.src.From)
		}
	}
	for _, w := range workloads {
		if !ids[w.id] {
			return fmt.Errorf("workload %s is not in the render of %s", w.id, g.src.From)
		}
	}
	for _, id := range nodePullObjects {
		if !ids[id] {
			return fmt.Errorf("node pull object %s is not in the render of %s", id, g.src.From)
		}
	}
	for _, obj := range g.src.Prometheus {
		if _, ok := monitoringKinds[obj.kind()]; !ok {
			return fmt.Errorf("config/prometheus renders %s, which no metrics.* value switches", obj.id())
		}
	}
	return nil
}

func workloadKey(id string) string {
	for _, w := range workloads {
		if w.id == id {
			return w.key
		}
	}
	return ""
}

// kubeletRoot is the kubelet root directory the render derived the CSI driver's paths from: the
// value of its KUBELET_DIR (the install's ConfigMap connectors-kubelet-root is build-time input
// only, left out of the render).
func kubeletRoot(objs []object) (string, error) {
	root := ""
	for _, obj := range objs {
		for _, c := range containers(obj) {
			env, _ := c["env"].([]any)
			for _, e := range env {
				e, _ := e.(map[string]any)
				if e["name"] == kubeletDirEnv {
					v, _ := e["value"].(string)
					if root != "" && v != root {
						return "", fmt.Errorf("two kubelet root directories: %s and %s", root, v)
					}
					root = v
				}
			}
		}
	}
	if !strings.HasPrefix(root, "/") {
		return "", fmt.Errorf("no container has %s, the kubelet root directory, as an absolute path (%q)", kubeletDirEnv, root)
	}
	return root, nil
}

// podSpec is the pod template's spec of a workload, or nil.
func podSpec(obj object) map[string]any {
	spec, _ := obj["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	ps, _ := tmpl["spec"].(map[string]any)
	return ps
}

// containers are a workload's containers and init containers.
func containers(obj object) []map[string]any {
	ps := podSpec(obj)
	var out []map[string]any
	for _, field := range []string{"initContainers", "containers"} {
		list, _ := ps[field].([]any)
		for _, c := range list {
			if c, ok := c.(map[string]any); ok {
				out = append(out, c)
			}
		}
	}
	return out
}

// template turns one rendered object into a template file's text.
func (g *generator) template(orig object, monitoring bool) (string, error) {
	obj := deepCopy(orig).(map[string]any)
	var conditions []string
	prelude := ""

	// Namespaces first: the rules after it see the namespace as a sentinel.
	g.namespaces(obj, "")
	if object(obj).kind() == "Namespace" {
		md := object(obj).metadata()
		for _, ns := range namespaceValues {
			if md["name"] == ns.name {
				md["name"] = g.t.quoted(ns.value)
			}
		}
	}
	for _, ns := range []string{systemNamespace, credentialsNamespace} {
		if err := leftover(obj, ns); err != nil {
			return "", err
		}
	}
	g.strings(obj)

	id := object(obj).id()
	if key := workloadKey(id); key != "" {
		if err := g.workload(obj, key); err != nil {
			return "", err
		}
	}
	for _, np := range nodePullObjects {
		if id == np {
			conditions = append(conditions, nodePullDeployed)
		}
	}
	if object(obj).kind() == "ResourceQuota" && !noPodsQuota(obj) {
		p, cond, err := g.quota(orig, obj)
		if err != nil {
			return "", err
		}
		prelude, conditions = p, append(conditions, cond)
	}
	if monitoring {
		key := monitoringKinds[object(obj).kind()]
		g.vals.monitoring[key] = true
		conditions = append(conditions, ".Values.metrics."+key+".enabled")
		md := object(obj).metadata()
		labels, _ := md["labels"].(map[string]any)
		md["labels"] = g.t.fragment("toYaml (merge " + dictLiteral(labels) + " .Values.metrics." + key + ".labels)")
	}

	text, err := g.t.yamlText(obj)
	if err != nil {
		return "", err
	}
	header := fmt.Sprintf("# Generated by test/tools/helm (make chart) from %s; edit config/, not this file.\n", g.origin(monitoring))
	if len(conditions) == 0 {
		return header + prelude + text, nil
	}
	return header + prelude + "{{- if " + andAll(conditions) + " }}\n" + text + "{{- end }}\n", nil
}

func (g *generator) origin(monitoring bool) string {
	if monitoring {
		return "config/prometheus"
	}
	return g.src.From
}

func andAll(conds []string) string {
	if len(conds) == 1 {
		return conds[0]
	}
	return "and (" + strings.Join(conds, ") (") + ")"
}

// namespaces replaces the install's namespace names where they stand for a namespace: every
// `namespace` field (metadata, RBAC subjects, webhook services), a namespace selector on
// kubernetes.io/metadata.name (matchLabels and matchExpressions), and inside strings (DNS names,
// references, flags: namespacesIn). A name that happens to equal a namespace's (the DaemonSet
// and ServiceAccount connectors-node) is left alone.
func (g *generator) namespaces(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			x[k] = g.namespaces(c, k)
		}
		if x["key"] == metadataNameLabel {
			if list, ok := x["values"].([]any); ok {
				for i, s := range list {
					list[i] = g.wholeNamespace(s)
				}
			}
		}
		return x
	case []any:
		for i := range x {
			x[i] = g.namespaces(x[i], key)
		}
		return x
	case string:
		if key == "namespace" || key == metadataNameLabel {
			return g.wholeNamespace(x)
		}
		return g.namespacesIn(x)
	}
	return v
}

func (g *generator) wholeNamespace(v any) any {
	for _, ns := range namespaceValues {
		if v == ns.name {
			return g.t.quoted(ns.value)
		}
	}
	return v
}

// namespacesIn replaces a namespace's name inside a string where it is one: the namespace label
// of a DNS name (<service>.<ns>.svc, and <ns>.svc in the CA's name constraints), a <ns>/<name>
// reference (whole, or after "=" or "," in a flag), the value of a --*namespace= flag, and a
// PromQL matcher namespace="<ns>".
func (g *generator) namespacesIn(s string) string {
	for _, ns := range namespaceValues {
		var b strings.Builder
		rest := s
		for {
			i := strings.Index(rest, ns.name)
			if i < 0 {
				b.WriteString(rest)
				break
			}
			b.WriteString(rest[:i])
			after := rest[i+len(ns.name):]
			if isNamespaceAt(b.String(), after) {
				b.WriteString(g.t.inline(ns.value))
			} else {
				b.WriteString(ns.name)
			}
			rest = after
		}
		s = b.String()
	}
	return s
}

func isNamespaceAt(before, after string) bool {
	var last byte
	if before != "" {
		last = before[len(before)-1]
	}
	switch {
	case strings.HasPrefix(after, ".svc") && (last == 0 || last == '.'):
		rest := after[len(".svc"):]
		return rest == "" || strings.ContainsAny(rest[:1], ".:/")
	case strings.HasPrefix(after, "/"):
		return last == 0 || last == '=' || last == ','
	case after == "":
		return strings.HasPrefix(before, "--") && strings.HasSuffix(before, "namespace=")
	case strings.HasPrefix(after, `"`):
		return strings.HasSuffix(before, `namespace="`)
	}
	return false
}

// leftover fails when a name is still in an object outside a sentinel: connectors-system and
// connectors-credentials name no object, so each occurrence is a namespace no rule recognised.
func leftover(v any, name string) error {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if err := leftover(c, name); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
	case []any:
		for i, c := range x {
			if err := leftover(c, name); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	case string:
		if strings.Contains(x, name) {
			return fmt.Errorf("%q holds %s where the generator does not recognise a namespace: teach namespacesIn this form", x, name)
		}
	}
	return nil
}

// strings applies the rules on string values: every path under the kubelet root directory, and
// the flags naming the node pull listener.
func (g *generator) strings(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			x[k] = g.strings(c)
		}
		return x
	case []any:
		for i := range x {
			x[i] = g.strings(x[i])
		}
		return x
	case string:
		root := g.vals.kubeletRoot
		switch {
		case x == root:
			x = g.t.quoted(".Values.kubeletRoot")
		case strings.HasPrefix(x, root+"/"):
			x = g.t.inline(".Values.kubeletRoot") + strings.TrimPrefix(x, root)
		}
		for _, flag := range nodePullFlags {
			if strings.HasPrefix(x, flag) && len(x) > len(flag) {
				x = flag + g.t.action("{{ if "+nodePullDeployed+" }}") + x[len(flag):] + g.t.action("{{ end }}")
			}
		}
		return x
	}
	return v
}

// workload templates a workload's images, resources and priority class.
func (g *generator) workload(obj map[string]any, key string) error {
	for _, c := range containers(obj) {
		name, _ := c["name"].(string)
		if ref, ok := c["image"].(string); ok {
			ik := imageKey(ref)
			if prev, seen := g.vals.images[ik]; seen && prev != ref {
				return fmt.Errorf("image %s: two references, %s and %s", ik, prev, ref)
			} else if !seen {
				g.vals.images[ik] = ref
				g.vals.imageOrder = append(g.vals.imageOrder, ik)
			}
			c["image"] = g.t.quoted(".Values.images." + ik)
		}
		if res, ok := c["resources"]; ok {
			rk := camel(name)
			if _, seen := g.vals.resources[rk]; seen {
				return fmt.Errorf("two containers named %s", name)
			}
			g.vals.resources[rk] = res
			g.vals.resourcesOrder = append(g.vals.resourcesOrder, rk)
			c["resources"] = g.t.fragment("toYaml .Values.resources." + rk)
		}
	}
	ps := podSpec(obj)
	class, _ := ps["priorityClassName"].(string)
	g.vals.priorityClass[key] = class
	ps["priorityClassName"] = g.t.optionalLine(".Values.priorityClassNames." + key)
	return nil
}

// noPodsQuota is a ResourceQuota that admits no pod at all (config/default/no-pods-quota.yaml,
// in the credentials namespace): it stays as it is, whatever the priority classes.
func noPodsQuota(obj object) bool {
	spec, _ := obj["spec"].(map[string]any)
	hard, _ := spec["hard"].(map[string]any)
	_, scoped := spec["scopeSelector"]
	_, scopes := spec["scopes"]
	return len(hard) == 1 && fmt.Sprint(hard["pods"]) == "0" && !scoped && !scopes
}

// quota templates a ResourceQuota that admits priority classes (config/default/priority-quota.yaml):
// its classes are those the workloads in its namespace run at, as the values set them, and it
// is left out when they run at none. The render must agree, or the quota means something else.
func (g *generator) quota(orig, obj object) (prelude, condition string, err error) {
	spec, _ := obj["spec"].(map[string]any)
	sel, _ := spec["scopeSelector"].(map[string]any)
	exprs, _ := sel["matchExpressions"].([]any)
	if len(exprs) != 1 {
		return "", "", fmt.Errorf("want one scopeSelector expression (PriorityClass In ...)")
	}
	e, _ := exprs[0].(map[string]any)
	if e["scopeName"] != "PriorityClass" || e["operator"] != "In" {
		return "", "", fmt.Errorf("want scopeSelector PriorityClass In ..., have %v", e)
	}
	var keys, classes []string
	for _, w := range workloads {
		for _, o := range g.src.Install {
			if o.id() == w.id && o.namespace() == orig.namespace() {
				keys = append(keys, strconv.Quote(w.key))
				if c, _ := podSpec(o)["priorityClassName"].(string); c != "" && !contains(classes, c) {
					classes = append(classes, c)
				}
			}
		}
	}
	var have []string
	for _, v := range e["values"].([]any) {
		have = append(have, fmt.Sprint(v))
	}
	sort.Strings(have)
	sort.Strings(classes)
	if strings.Join(have, ",") != strings.Join(classes, ",") {
		return "", "", fmt.Errorf("admits priority classes %v, but the workloads in %s run at %v", have, orig.namespace(), classes)
	}
	e["values"] = g.t.fragment("toYaml $classes")
	prelude = `{{- $classes := include "harbor-connector.priorityClasses" (dict "Values" .Values "workloads" (list ` +
		strings.Join(keys, " ") + `)) | fromYamlArray }}` + "\n"
	return prelude, "$classes", nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// imageKey is an image's values key: its repository's last path element in camel case
// (ghcr.io/alauda/harbor-connector/csi-driver:v1 is csiDriver).
func imageKey(ref string) string {
	name := ref
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}
	name = name[strings.LastIndex(name, "/")+1:]
	if i := strings.Index(name, ":"); i >= 0 {
		name = name[:i]
	}
	return camel(name)
}

func camel(s string) string {
	parts := strings.Split(s, "-")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// dictLiteral is a template's dict of a label map, in sorted key order.
func dictLiteral(labels map[string]any) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{"dict"}
	for _, k := range keys {
		parts = append(parts, strconv.Quote(k), strconv.Quote(fmt.Sprint(labels[k])))
	}
	return "(" + strings.Join(parts, " ") + ")"
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case object:
		return deepCopy(map[string]any(x))
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			out[k] = deepCopy(c)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = deepCopy(c)
		}
		return out
	}
	return v
}
