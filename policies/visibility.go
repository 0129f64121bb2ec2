package policies

import "fmt"

// Namespace is what visibility needs to know about a namespace: its name and labels.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// CanUseConnector decides whether workloads in namespace `from` may use a connector living in
// namespace `owner`. A connector is usable from its own namespace; from every namespace when it
// lives in kube-public; and from namespaces labelled cpaas.io/project=<g> when its namespace is
// labelled cpaas.io/inner-namespace=<g>. Whoever can set those labels controls sharing.
// The webhook, the proxy and the CSI driver all call this one function. When use is refused,
// the error says why and what would allow it.
func CanUseConnector(from, owner Namespace, connector string) error {
	switch {
	case from.Name == owner.Name:
		return nil
	case owner.Name == PublicNamespace:
		return nil
	}
	if group := owner.Labels[LabelInnerNamespace]; group != "" && from.Labels[LabelProject] == group {
		return nil
	}
	return fmt.Errorf("connector %s/%s is not visible from namespace %s: a connector is usable from its own namespace, from every namespace when it lives in %s, or from namespaces labelled %s=<group> when its namespace is labelled %s=<group>",
		owner.Name, connector, from.Name, PublicNamespace, LabelProject, LabelInnerNamespace)
}
