package policies

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ConnectorRef names one connector.
type ConnectorRef struct {
	Namespace string
	Name      string
}

// String is "<namespace>/<name>", the form annotations, CSI attributes and logs use.
func (r ConnectorRef) String() string { return r.Namespace + "/" + r.Name }

// ParseConnectorAnnotation reads the value of AnnotationConnector: "<name>" (in the workload's
// namespace) or "<namespace>/<name>", several separated by commas. Duplicates collapse; the
// result is sorted so equal annotations always give equal plans. The error names the key, the
// value and the expected format.
func ParseConnectorAnnotation(value, workloadNamespace string) ([]ConnectorRef, error) {
	bad := func(why string) error {
		return fmt.Errorf("annotation %s=%q: %s; expected <name> or <namespace>/<name>, comma-separated (e.g. %s=harbor or %s=team-a/harbor)",
			AnnotationConnector, value, why, AnnotationConnector, AnnotationConnector)
	}
	if strings.TrimSpace(value) == "" {
		return nil, bad("the value is empty")
	}
	seen := map[ConnectorRef]bool{}
	var refs []ConnectorRef
	for _, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, bad("it has an empty entry")
		}
		ref := ConnectorRef{Namespace: workloadNamespace}
		switch parts := strings.Split(item, "/"); len(parts) {
		case 1:
			ref.Name = parts[0]
		case 2:
			ref.Namespace, ref.Name = parts[0], parts[1]
		default:
			return nil, bad(fmt.Sprintf("%q has more than one '/'", item))
		}
		if errs := validation.IsDNS1123Label(ref.Namespace); len(errs) > 0 {
			return nil, bad(fmt.Sprintf("namespace %q is not a valid namespace name (%s)", ref.Namespace, errs[0]))
		}
		if errs := validation.IsDNS1123Label(ref.Name); len(errs) > 0 {
			return nil, bad(fmt.Sprintf("connector name %q is not a valid name (%s)", ref.Name, errs[0]))
		}
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].String() < refs[j].String() })
	return refs, nil
}

// InjectSet says which parts to inject.
type InjectSet struct {
	Volume, Env, Images bool
}

// AllParts injects the volume, the env and the image rewrites.
var AllParts = InjectSet{Volume: true, Env: true, Images: true}

// ParseInjectAnnotation reads AnnotationInject ("volume,env,images" or a subset). An absent
// annotation means all parts.
func ParseInjectAnnotation(value string, present bool) (InjectSet, error) {
	if !present {
		return AllParts, nil
	}
	var set InjectSet
	for _, item := range strings.Split(value, ",") {
		switch InjectPart(strings.TrimSpace(item)) {
		case InjectVolume:
			set.Volume = true
		case InjectEnv:
			set.Env = true
		case InjectImages:
			set.Images = true
		default:
			return InjectSet{}, fmt.Errorf("annotation %s=%q: %q is not one of volume, env, images; list the parts to inject, comma-separated, or remove the annotation to inject all three",
				AnnotationInject, value, strings.TrimSpace(item))
		}
	}
	return set, nil
}
