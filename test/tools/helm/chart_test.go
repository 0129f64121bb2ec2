package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The install's objects, as keys (group/kind/namespace/name).
const (
	nodeDaemonSet    = "apps/DaemonSet/connectors-node/connectors-node"
	nodeSA           = "/ServiceAccount/connectors-node/connectors-node"
	fromNodesNP      = "networking.k8s.io/NetworkPolicy/connectors-system/connectors-proxy-from-nodes"
	csiDaemonSet     = "apps/DaemonSet/connectors-node/connectors-csi"
	managerDeploy    = "apps/Deployment/connectors-system/connectors-manager"
	proxyDeploy      = "apps/Deployment/connectors-system/connectors-proxy"
	systemQuota      = "/ResourceQuota/connectors-system/connectors-critical-pods"
	nodeQuota        = "/ResourceQuota/connectors-node/connectors-critical-pods"
	credentialsQuota = "/ResourceQuota/connectors-credentials/connectors-no-pods"
	serviceMonitor   = "monitoring.coreos.com/ServiceMonitor/connectors-system/connectors-metrics"
)

// helm lint --strict passes on the generated chart, with its default values and with every
// value set otherwise.
func TestLint(t *testing.T) {
	chart := defaultChart(t)
	for name, flags := range map[string][]string{
		"default values": nil,
		"other values": {
			"--set", "nodePull.mode=disabled", "--set", "metrics.serviceMonitor.enabled=true",
			"--set", "metrics.prometheusRule.enabled=true", "--set", "namespaces.system=hc-system",
			"--set", "namespaces.node=hc-node", "--set", "namespaces.credentials=hc-credentials", "--set", "kubeletRoot=/var/lib/k0s/kubelet",
			"--set", "priorityClassNames.manager=", "--set", "images.proxy=registry.example.com/proxy:v2",
		},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, append([]string{"lint", "--strict", chart}, flags...)...)
			require.NoError(t, err)
			assert.Contains(t, out, "0 chart(s) failed")
		})
	}
}

// values.schema.json refuses values the templates cannot place: a namespace that is no DNS
// label, a relative kubelet root, an unknown node-pull mode, a misspelt key.
func TestValuesSchemaRefuses(t *testing.T) {
	chart := defaultChart(t)
	for _, set := range []string{
		"namespaces.system=Connectors_System",
		"namespaces.node=a\"b",
		"namespaces.credentials=hc.credentials",
		"kubeletRoot=var/lib/kubelet",
		"kubeletRoot=/var/lib/kubelet/",
		"nodePull.mode=per-pod",
		"nodePull.enabled=false",
		"metrics.serviceMonitor.enabled=yes",
	} {
		_, err := helm(t, "template", "harbor-connector", chart, "--set", set)
		assert.ErrorContains(t, err, "don't meet the specifications of the schema", "--set %s", set)
	}
}

// With default values the chart renders exactly the kustomize render of config/default, object
// by object. The chart adds no label or annotation of its own (Helm adds its ownership
// metadata only on the cluster), so nothing is excluded from the comparison.
func TestDefaultRenderEqualsKustomize(t *testing.T) {
	want := kustomizeObjects(t, filesys.MakeFsOnDisk(), filepath.Join(repo, "config", "default"))
	got := render(t, defaultChart(t))
	require.NotEmpty(t, want)
	assert.Empty(t, diffRenders(want, got))
	assert.Len(t, got, len(want))
}

// The comparison the tests rest on sees a change anywhere in an object, a missing object and an
// extra one.
func TestDiffRendersSeesChanges(t *testing.T) {
	want := kustomizeObjects(t, filesys.MakeFsOnDisk(), filepath.Join(repo, "config", "default"))
	changed := kustomizeObjects(t, filesys.MakeFsOnDisk(), filepath.Join(repo, "config", "default"))
	for _, o := range changed {
		if key(o) == csiDaemonSet {
			get(o, "spec", "template", "spec", "volumes", 0, "hostPath").(map[string]any)["type"] = "Directory"
		}
	}
	assert.Equal(t, []string{csiDaemonSet + ": .spec.template.spec.volumes[0].hostPath.type: want DirectoryOrCreate, got Directory"}, diffRenders(want, changed))
	assert.Equal(t, []string{"missing " + key(want[0])}, diffRenders(want, want[1:]))
	assert.Equal(t, []string{"extra " + key(want[0])}, diffRenders(want[1:], want))
}

// kubeletRoot does what config/kubelet-root does with the ConfigMap connectors-kubelet-root
// (make deploy KUBELET_ROOT=...): the chart renders what kustomize renders for that overlay, and
// that changes the CSI driver's paths and nothing else.
func TestKubeletRoot(t *testing.T) {
	const root = "/var/lib/k0s/kubelet"
	mem := memConfig(t)
	writeMem(t, mem, map[string]string{
		"config/overlays/kubelet-root-test/setting/kustomization.yaml": `apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
patches:
- patch: |-
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: connectors-kubelet-root, namespace: connectors-system}
    data: {path: "` + root + `"}
`,
		"config/overlays/kubelet-root-test/kustomization.yaml": "resources:\n- ../../default\ncomponents:\n- setting\n- ../../kubelet-root\n",
	})
	want := kustomizeObjects(t, mem, "/repo/config/overlays/kubelet-root-test")
	got := render(t, defaultChart(t), "--set", "kubeletRoot="+root)
	assert.Empty(t, diffRenders(want, got))

	changed := diffRenders(render(t, defaultChart(t)), got)
	assert.Len(t, changed, 7, "KUBELET_DIR and three host paths with their mount paths: %v", changed)
	for _, d := range changed {
		assert.True(t, strings.HasPrefix(d, csiDaemonSet+": "), d)
		assert.Contains(t, d, "got "+root)
	}
}

// images.* set the images as a kustomize images: overlay does (make images writes one), by tag
// or by digest.
func TestImages(t *testing.T) {
	const digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	const digestC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	mem := memConfig(t)
	writeMem(t, mem, map[string]string{"config/overlays/images-test/kustomization.yaml": `resources:
- ../../default
images:
- {name: ghcr.io/alauda/harbor-connector/manager, newName: registry.example.com/hc/manager, digest: ` + digestA + `}
- {name: ghcr.io/alauda/harbor-connector/proxy, newName: registry.example.com/hc/proxy, newTag: v9}
- {name: ghcr.io/alauda/harbor-connector/csi-driver, newName: registry.example.com/hc/csi-driver, digest: ` + digestC + `}
`})
	want := kustomizeObjects(t, mem, "/repo/config/overlays/images-test")
	got := render(t, defaultChart(t),
		"--set", "images.manager=registry.example.com/hc/manager@"+digestA,
		"--set", "images.proxy=registry.example.com/hc/proxy:v9",
		"--set", "images.csiDriver=registry.example.com/hc/csi-driver@"+digestC)
	assert.Empty(t, diffRenders(want, got))
	assert.Equal(t, "registry.example.com/hc/proxy:v9", container(t, byKey(got), nodeDaemonSet)["image"], "the node pull listener runs the proxy's image")

	// make chart from the overlay make images writes: its images become the defaults.
	version, err := ProductVersion(repo)
	require.NoError(t, err)
	chart, err := GenerateFrom(mem, "/repo", "config/overlays/images-test", "config/prometheus", version)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "harbor-connector")
	require.NoError(t, chart.Write(dir))
	assert.Empty(t, diffRenders(want, render(t, dir)))
	assert.Contains(t, chart["values.yaml"], "\n  manager: registry.example.com/hc/manager@"+digestA+"\n")
}

// namespaces.* move every object and every reference to a namespace: DNS names in the
// certificates and the root CA's name constraints, webhook services and the cainjector
// annotation, RBAC subjects and the Roles of the credentials namespace, the trust-manager
// Bundles' target, the webhooks' exclusions and every binary's flags. Names that equal a
// namespace's (the DaemonSet and ServiceAccount connectors-node) stay.
func TestNamespaces(t *testing.T) {
	const sys, node, creds = "hc-system", "hc-node", "hc-credentials"
	def := render(t, defaultChart(t))
	got := render(t, defaultChart(t), "--set", "namespaces.system="+sys, "--set", "namespaces.node="+node, "--set", "namespaces.credentials="+creds)
	renamed := func(ns string) string {
		return map[string]string{"connectors-system": sys, "connectors-node": node, "connectors-credentials": creds, "": ""}[ns]
	}

	t.Run("every object is in its new namespace, and only namespaces changed", func(t *testing.T) {
		g := byKey(got)
		require.Len(t, got, len(def))
		for _, d := range def {
			k := strings.Replace(key(d), "/"+d.namespace()+"/", "/"+renamed(d.namespace())+"/", 1)
			if d.kind() == "Namespace" {
				k = "/Namespace//" + renamed(d.name())
			}
			o, ok := g[k]
			if !assert.True(t, ok, "%s is %s", key(d), k) {
				continue
			}
			for _, diff := range diffValues("", map[string]any(d), map[string]any(o)) {
				_, change, ok := strings.Cut(diff, ": want ")
				require.True(t, ok, "%s: only values change: %s", k, diff)
				before, after, ok := strings.Cut(change, ", got ")
				require.True(t, ok, diff)
				back := strings.NewReplacer(sys, "connectors-system", node, "connectors-node", creds, "connectors-credentials").Replace(after)
				assert.Equal(t, before, back, "%s: only namespace names change: %s", k, diff)
			}
		}
	})

	t.Run("no reference to the old namespaces is left", func(t *testing.T) {
		for _, o := range got {
			strs(key(o), o, func(path, s string) {
				assert.NotContains(t, s, "connectors-system", path)
				assert.NotContains(t, s, "connectors-credentials", path)
				if strings.Contains(s, "connectors-node") {
					last := path[strings.LastIndex(path, ".")+1:]
					isName := last == "name" || last == "serviceAccountName" || strings.HasSuffix(path, "app.kubernetes.io/name")
					assert.True(t, isName || s == "--node-forwarders="+node+"/connectors-node", "%s: %s names the old namespace", path, s)
				}
			})
		}
	})

	g := byKey(got)
	find := func(kind, ns, name string) object {
		for _, o := range got {
			if o.kind() == kind && o.namespace() == ns && o.name() == name {
				return o
			}
		}
		t.Fatalf("no %s %s/%s", kind, ns, name)
		return nil
	}
	t.Run("references", func(t *testing.T) {
		assert.Equal(t, []any{"connectors-proxy." + sys + ".svc", "connectors-proxy." + sys + ".svc.cluster.local"}, get(find("Certificate", sys, "connectors-proxy"), "spec", "dnsNames"))
		assert.Equal(t, []any{"connectors-webhook." + sys + ".svc", "connectors-webhook." + sys + ".svc.cluster.local"}, get(find("Certificate", sys, "connectors-webhook"), "spec", "dnsNames"))
		assert.Equal(t, []any{sys + ".svc", sys + ".svc.cluster.local"}, get(find("Certificate", sys, "connectors-root-ca"), "spec", "nameConstraints", "permitted", "dnsDomains"))
		for _, name := range []string{"connectors-proxy-inject", "connectors-pod-status"} {
			kind := map[string]string{"connectors-proxy-inject": "MutatingWebhookConfiguration", "connectors-pod-status": "ValidatingWebhookConfiguration"}[name]
			wh := find(kind, "", name)
			assert.Equal(t, sys+"/connectors-webhook", get(wh, "metadata", "annotations", "cert-manager.io/inject-ca-from"))
			for i := range get(wh, "webhooks").([]any) {
				assert.Equal(t, sys, get(wh, "webhooks", i, "clientConfig", "service", "namespace"))
			}
		}
		mwh := find("MutatingWebhookConfiguration", "", "connectors-proxy-inject")
		assert.Equal(t, []any{"kube-system", sys, node}, get(mwh, "webhooks", 0, "namespaceSelector", "matchExpressions", 1, "values"), "the webhook skips the product's own namespaces")
		for _, b := range []string{"connectors-proxy-ca", "connectors-intercept-ca"} {
			assert.Equal(t, node, get(find("Bundle", "", b), "spec", "target", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"))
		}
		for _, name := range []string{"connectors-manager", "connectors-proxy"} {
			rb := find("RoleBinding", creds, name)
			assert.Equal(t, "Role", get(rb, "roleRef", "kind"))
			role := find("Role", creds, get(rb, "roleRef", "name").(string))
			assert.Equal(t, []any{"secrets"}, get(role, "rules", 0, "resources"), "%s reads or writes the copies in %s", name, creds)
		}
		assert.Equal(t, map[string]any{"pods": "0"}, get(find("ResourceQuota", creds, "connectors-no-pods"), "spec", "hard"), "no pod runs in %s", creds)
		for _, o := range got {
			if subjects, ok := get(o, "subjects").([]any); ok {
				for i := range subjects {
					sa := get(o, "subjects", i, "name").(string)
					ns := get(o, "subjects", i, "namespace")
					assert.Contains(t, g, "/ServiceAccount/"+ns.(string)+"/"+sa, "%s: subject %s/%s exists", key(o), ns, sa)
				}
			}
		}
	})

	t.Run("flags", func(t *testing.T) {
		proxyURL := "https://connectors-proxy." + sys + ".svc"
		manager := args(container(t, g, "apps/Deployment/"+sys+"/connectors-manager"))
		for flag, want := range map[string]string{
			"--leader-election-namespace": sys, "--credentials-namespace": creds, "--proxy-address": proxyURL,
			"--forward-proxy-url": "http://connectors-proxy." + sys + ".svc:3128",
		} {
			v, _ := flagValue(manager, flag)
			assert.Equal(t, want, v, "manager %s", flag)
		}
		proxy := args(container(t, g, "apps/Deployment/"+sys+"/connectors-proxy"))
		v, _ := flagValue(proxy, "--credentials-namespace")
		assert.Equal(t, creds, v, "the proxy reads the copies where the manager writes them")
		v, _ = flagValue(proxy, "--node-forwarders")
		assert.Equal(t, node+"/connectors-node", v, "the proxy accepts the node listener's ServiceAccount in its new namespace")
		v, _ = flagValue(args(container(t, g, "apps/DaemonSet/"+node+"/connectors-node")), "--upstream-proxy")
		assert.Equal(t, proxyURL, v)
		csi := args(container(t, g, "apps/DaemonSet/"+node+"/connectors-csi"))
		for flag, want := range map[string]string{
			"--forward-proxy": "http://connectors-proxy." + sys + ".svc:3128", "--forward-proxy-tls": "https://connectors-proxy." + sys + ".svc:3129",
			"--reverse-host": "connectors-proxy." + sys + ".svc",
		} {
			v, _ := flagValue(csi, flag)
			assert.Equal(t, want, v, "CSI driver %s: the files in each volume name the proxy in its namespace", flag)
		}
	})
}

// nodePull.mode=disabled leaves out the node pull listener's DaemonSet, its ServiceAccount and
// the NetworkPolicy admitting its relays, and empties the proxy's --node-forwarders; nothing
// else changes.
func TestNodePullDisabled(t *testing.T) {
	def := render(t, defaultChart(t))
	got := render(t, defaultChart(t), "--set", "nodePull.mode=disabled")
	assert.ElementsMatch(t, []string{
		"missing " + fromNodesNP, "missing " + nodeSA, "missing " + nodeDaemonSet,
		proxyDeploy + ": .spec.template.spec.containers[0].args[8]: want --node-forwarders=connectors-node/connectors-node, got --node-forwarders=",
	}, diffRenders(def, got))
}

// priorityClassNames.* set each workload's class ("" removes it), and each namespace's
// ResourceQuota admits the classes its pods run at, or is left out when they run at none.
func TestPriorityClasses(t *testing.T) {
	def := render(t, defaultChart(t))
	values := filepath.Join(t.TempDir(), "values.yaml")
	require.NoError(t, os.WriteFile(values, []byte(`priorityClassNames:
  manager: ""
  proxy: hc-high
  nodePull: system-node-critical
  csiDriver: hc-node
`), 0o644))
	got := render(t, defaultChart(t), "-f", values)
	assert.ElementsMatch(t, []string{
		managerDeploy + ": .spec.template.spec.priorityClassName: missing (want system-cluster-critical)",
		proxyDeploy + ": .spec.template.spec.priorityClassName: extra hc-high",
		csiDaemonSet + ": .spec.template.spec.priorityClassName: want system-node-critical, got hc-node",
		systemQuota + ": .spec.scopeSelector.matchExpressions[0].values[0]: want system-cluster-critical, got hc-high",
		nodeQuota + ": .spec.scopeSelector.matchExpressions[0].values: want [system-node-critical], got [system-node-critical hc-node]",
	}, diffRenders(def, got))

	none := render(t, defaultChart(t), "--set", "priorityClassNames.manager=", "--set", "priorityClassNames.csiDriver=", "--set", "priorityClassNames.nodePull=")
	assert.NotContains(t, byKey(none), systemQuota, "no class to admit")
	assert.NotContains(t, byKey(none), nodeQuota)
	assert.Contains(t, byKey(none), credentialsQuota, "the credentials namespace admits no pod whatever the classes")
	assert.Equal(t, byKey(def)[credentialsQuota], byKey(got)[credentialsQuota])

	noNode := byKey(render(t, defaultChart(t), "--set", "nodePull.mode=disabled", "--set", "priorityClassNames.csiDriver=hc-node"))
	assert.Equal(t, []any{"hc-node"}, get(noNode[nodeQuota], "spec", "scopeSelector", "matchExpressions", 0, "values"), "the listener's class only while it is deployed")
}

// resources.<container> set that container's requests and limits and nothing else.
func TestResources(t *testing.T) {
	def := render(t, defaultChart(t))
	got := render(t, defaultChart(t), "--set", "resources.proxy.limits.memory=1Gi", "--set", "resources.nodePull.requests.cpu=1")
	assert.ElementsMatch(t, []string{
		proxyDeploy + ": .spec.template.spec.containers[0].resources.limits.memory: want 256Mi, got 1Gi",
		nodeDaemonSet + ": .spec.template.spec.containers[0].resources.requests.cpu: want 20m, got 1",
	}, diffRenders(def, got))
}

// metrics.serviceMonitor.enabled and metrics.prometheusRule.enabled add exactly the objects of
// that kind config/prometheus renders, with the given labels added.
func TestMonitoring(t *testing.T) {
	def := render(t, defaultChart(t))
	prom := kustomizeObjects(t, filesys.MakeFsOnDisk(), filepath.Join(repo, "config", "prometheus"))
	for kind, value := range monitoringKinds {
		t.Run(kind, func(t *testing.T) {
			var want []object
			for _, o := range prom {
				if o.kind() == kind {
					want = append(want, o)
				}
			}
			if kind == "ServiceMonitor" {
				require.Len(t, want, 1)
			}
			got := render(t, defaultChart(t), "--set", "metrics."+value+".enabled=true")
			assert.Empty(t, diffRenders(append(append([]object{}, def...), want...), got))

			labelled := render(t, defaultChart(t), "--set", "metrics."+value+".enabled=true", "--set", "metrics."+value+".labels.release=prom")
			for _, o := range want {
				o = normalise(deepCopy(o).(map[string]any))
				o.metadata()["labels"].(map[string]any)["release"] = "prom"
				assert.Empty(t, diffValues("", map[string]any(o), map[string]any(byKey(labelled)[key(o)])))
			}
		})
	}
	assert.Contains(t, byKey(render(t, defaultChart(t), "--set", "metrics.serviceMonitor.enabled=true")), serviceMonitor)
}

// A PrometheusRule added to config/prometheus (listed in its kustomization) comes into the chart
// by itself, behind metrics.prometheusRule.enabled: its alert templates ({{ $labels.x }}) reach
// Prometheus unchanged and its PromQL namespace matchers follow namespaces.system.
func TestPrometheusRuleFromConfig(t *testing.T) {
	mem := memConfig(t)
	kust, err := os.ReadFile(filepath.Join(repo, "config", "prometheus", "kustomization.yaml"))
	require.NoError(t, err)
	writeMem(t, mem, map[string]string{
		"config/prometheus/kustomization.yaml": string(kust) + "- fixture-rules.yaml\n",
		"config/prometheus/fixture-rules.yaml": `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: connectors-fixture-alerts
  namespace: connectors-system
  labels: {app.kubernetes.io/part-of: harbor-connector}
spec:
  groups:
  - name: harbor-connector-fixture
    rules:
    - alert: ConnectorsProxyDown
      expr: absent(up{namespace="connectors-system", service="connectors-proxy-metrics"} == 1)
      for: 5m
      labels: {severity: critical}
      annotations:
        summary: 'No proxy in {{ $labels.namespace }} is scraped ({{ $value }})'
`,
	})
	chart := filepath.Join(t.TempDir(), "harbor-connector")
	require.NoError(t, writeChart(mem, "/repo", chart))
	out, err := helm(t, "lint", "--strict", chart, "--set", "metrics.prometheusRule.enabled=true")
	require.NoError(t, err, out)

	var rule object
	var rules []object // the fixture and config/prometheus's own
	for _, o := range kustomizeObjects(t, mem, "/repo/config/prometheus") {
		if o.kind() == "PrometheusRule" {
			rules = append(rules, o)
		}
		if o.name() == "connectors-fixture-alerts" {
			rule = o
		}
	}
	require.NotNil(t, rule)
	def := render(t, chart)
	assert.NotContains(t, byKey(def), key(rule), "off by default")
	assert.Empty(t, diffRenders(append(def, rules...), render(t, chart, "--set", "metrics.prometheusRule.enabled=true")))

	moved := byKey(render(t, chart, "--set", "metrics.prometheusRule.enabled=true", "--set", "namespaces.system=hc-system"))
	r := moved["monitoring.coreos.com/PrometheusRule/hc-system/connectors-fixture-alerts"]
	require.NotNil(t, r)
	assert.Equal(t, `absent(up{namespace="hc-system", service="connectors-proxy-metrics"} == 1)`, get(r, "spec", "groups", 0, "rules", 0, "expr"))
	assert.Equal(t, "No proxy in {{ $labels.namespace }} is scraped ({{ $value }})", get(r, "spec", "groups", 0, "rules", 0, "annotations", "summary"))
}

// The generator refuses a render its rules do not cover, rather than leave a value untemplated:
// the system or credentials namespace where no rule recognises it, a new workload, a monitoring object in the
// install.
func TestGenerateRefuses(t *testing.T) {
	install, err := Kustomize(filesys.MakeFsOnDisk(), filepath.Join(repo, "config", "default"))
	require.NoError(t, err)
	for name, extra := range map[string]object{
		"namespace in free text":             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x", "namespace": "connectors-system"}, "data": map[string]any{"k": "see connectors-system"}},
		"credentials namespace in free text": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x", "namespace": "connectors-system"}, "data": map[string]any{"k": "copies in connectors-credentials"}},
		"unknown workload": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "x", "namespace": "connectors-system"},
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "x", "image": "x"}}}}}},
		"ServiceMonitor in the install": {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": map[string]any{"name": "x", "namespace": "connectors-system"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Generate(Source{Install: append(append([]object{}, install...), extra), Version: "v0.1.0", From: "config/default"})
			assert.Error(t, err)
		})
	}
}

// Chart.yaml carries the product version; the single-file install is the kustomize render.
func TestChartVersionAndInstallFile(t *testing.T) {
	version, err := ProductVersion(repo)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(version, "v"), version)
	chartYAML, err := os.ReadFile(filepath.Join(defaultChart(t), "Chart.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(chartYAML), "\nversion: "+strings.TrimPrefix(version, "v")+"\n")
	assert.Contains(t, string(chartYAML), "\nappVersion: \""+version+"\"\n")

	file := filepath.Join(t.TempDir(), "harbor-connector.yaml")
	require.NoError(t, run(repo, "config/default", "config/prometheus", "", "", file))
	text, err := os.ReadFile(file)
	require.NoError(t, err)
	objs, err := parseYAML(string(text))
	require.NoError(t, err)
	for i, o := range objs {
		objs[i] = normalise(o)
	}
	want := kustomizeObjects(t, filesys.MakeFsOnDisk(), filepath.Join(repo, "config", "default"))
	assert.Empty(t, diffRenders(want, objs))
	assert.Equal(t, "Namespace", objs[0].kind(), "namespaces first, for kubectl apply -f")
}
