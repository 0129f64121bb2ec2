// Package csi is the connectors-csi node driver's logic: it reads an inline volume's attributes,
// decides which connectors the pod may use, renders the per-pod configuration files (proxy
// settings, a ServiceAccount token, the CA bundle, config.json, buildkitd.toml) and writes them
// atomically so republishing with a fresh token never exposes a half-written set.
package csi

import (
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/alauda/harbor-connector/policies"
)

// Configuration names the seed product's classes offer; each renders one file.
const (
	ConfigRegistry  = "registry-config" // config.json: auths for the reverse proxy host
	ConfigBuildkitd = "buildkitd"       // buildkitd.toml: the proxy host's CA
)

var knownConfigurations = map[string]string{ConfigRegistry: policies.FileDockerConfig, ConfigBuildkitd: "buildkitd.toml"}

// Attributes are a connectors-csi volume's parsed attributes.
type Attributes struct {
	// Connectors the volume serves, sorted.
	Connectors []policies.ConnectorRef
	// Configurations to render (configuration names, not file names), sorted.
	Configurations []string
}

// ParseAttributes reads volumeAttributes: "connectors" (<ns>/<name>,...) or the seed form
// "connector.name" + "connector.namespace", and "configuration.names" (comma-separated; "!name"
// excludes one of the defaults). podNamespace is the default namespace for bare names. Every
// error names its field.
func ParseAttributes(attrs map[string]string, podNamespace string) (Attributes, field.ErrorList) {
	var errs field.ErrorList
	root := field.NewPath("volumeAttributes")
	var out Attributes
	list, hasList := attrs[policies.CSIAttrConnectors]
	name, hasName := attrs[policies.CSIAttrConnectorName]
	switch {
	case hasList && hasName:
		errs = append(errs, field.Forbidden(root.Key(policies.CSIAttrConnectorName), "set either "+policies.CSIAttrConnectors+" or "+policies.CSIAttrConnectorName+", not both"))
	case hasList:
		refs, err := policies.ParseConnectorAnnotation(list, podNamespace)
		if err != nil {
			errs = append(errs, field.Invalid(root.Key(policies.CSIAttrConnectors), list, "expected <namespace>/<name>, comma-separated"))
		}
		out.Connectors = refs
	case hasName:
		ns := attrs[policies.CSIAttrConnectorNamespace]
		if ns == "" {
			ns = podNamespace
		}
		refs, err := policies.ParseConnectorAnnotation(ns+"/"+name, podNamespace)
		if err != nil {
			errs = append(errs, field.Invalid(root.Key(policies.CSIAttrConnectorName), name, "expected a connector name (and "+policies.CSIAttrConnectorNamespace+" a namespace name)"))
		}
		out.Connectors = refs
	default:
		errs = append(errs, field.Required(root.Key(policies.CSIAttrConnectors), "name the connectors this volume serves"))
	}

	selected := map[string]bool{}
	raw, has := attrs[policies.CSIAttrConfigurationNames]
	if !has {
		raw = policies.DefaultConfigurationNames
	}
	var excluded []string
	for _, item := range strings.Split(raw, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if name, ok := strings.CutPrefix(item, "!"); ok {
			excluded = append(excluded, name)
			continue
		}
		if _, ok := knownConfigurations[item]; !ok {
			errs = append(errs, field.NotSupported(root.Key(policies.CSIAttrConfigurationNames), item, []string{ConfigRegistry, ConfigBuildkitd}))
			continue
		}
		selected[item] = true
	}
	if len(selected) == 0 && len(excluded) > 0 {
		for _, d := range strings.Split(policies.DefaultConfigurationNames, ",") {
			selected[d] = true
		}
	}
	for _, e := range excluded {
		delete(selected, e)
	}
	for c := range selected {
		out.Configurations = append(out.Configurations, c)
	}
	sort.Strings(out.Configurations)
	return out, errs
}
