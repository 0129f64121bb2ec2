package manifests_test

// A NetworkPolicy evaluator for the install tests: enough of the API's semantics (pod and
// namespace selectors, ipBlocks with exceptions, named, numbered and ranged ports, policy types)
// to decide whether the rendered policies admit a given connection, without a CNI.

import (
	"net"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// podServesPort reports whether a NetworkPolicy port names a port some container declares (a
// port-less entry, meaning every port, names none).
func podServesPort(spec corev1.PodSpec, p networkingv1.NetworkPolicyPort) bool {
	if p.Port == nil {
		return true
	}
	for _, ctr := range spec.Containers {
		for _, cp := range ctr.Ports {
			if portMatches([]networkingv1.NetworkPolicyPort{p}, cp.Name, cp.ContainerPort, protocolOf(&cp.Protocol)) {
				return true
			}
		}
	}
	return false
}

func protocolOf(p *corev1.Protocol) corev1.Protocol {
	if p == nil || *p == "" {
		return corev1.ProtocolTCP
	}
	return *p
}

// portMatches applies a rule's ports to a destination port (name is "" for addresses outside
// the cluster, which named ports never match).
func portMatches(ports []networkingv1.NetworkPolicyPort, name string, number int32, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if protocolOf(p.Protocol) != proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			if name != "" && p.Port.StrVal == name {
				return true
			}
		case p.EndPort != nil:
			if number >= p.Port.IntVal && number <= *p.EndPort {
				return true
			}
		case p.Port.IntVal == number:
			return true
		}
	}
	return false
}

// netSource is where a connection comes from: a pod (namespace and labels) or an address
// outside the pod network (a node, the API server, another host).
type netSource struct {
	ip          net.IP
	podNS       string
	nsLabels    map[string]string // the pod's namespace's labels, besides kubernetes.io/metadata.name
	podLabels   map[string]string
	isPodSource bool
}

func externalIP(ip string) netSource { return netSource{ip: net.ParseIP(ip)} }

func podIn(ns string, podLabels map[string]string) netSource {
	return netSource{podNS: ns, podLabels: podLabels, isPodSource: true}
}

// podInLabelled is a pod in a namespace that carries nsLabels.
func podInLabelled(ns string, nsLabels, podLabels map[string]string) netSource {
	return netSource{podNS: ns, nsLabels: nsLabels, podLabels: podLabels, isPodSource: true}
}

func hasPolicyType(pol networkingv1.NetworkPolicy, typ networkingv1.PolicyType) bool {
	if len(pol.Spec.PolicyTypes) == 0 { // the API server's defaulting, for completeness
		return typ == networkingv1.PolicyTypeIngress || len(pol.Spec.Egress) > 0
	}
	for _, pt := range pol.Spec.PolicyTypes {
		if pt == typ {
			return true
		}
	}
	return false
}

// selecting returns the policies of a type that select pods with these labels.
func selecting(pols []networkingv1.NetworkPolicy, podLabels map[string]string, typ networkingv1.PolicyType) []networkingv1.NetworkPolicy {
	var out []networkingv1.NetworkPolicy
	for _, pol := range pols {
		sel, err := metav1.LabelSelectorAsSelector(&pol.Spec.PodSelector)
		if err == nil && sel.Matches(labels.Set(podLabels)) && hasPolicyType(pol, typ) {
			out = append(out, pol)
		}
	}
	return out
}

func isolated(pols []networkingv1.NetworkPolicy, podLabels map[string]string, typ networkingv1.PolicyType) bool {
	return len(selecting(pols, podLabels, typ)) > 0
}

func ipBlockContains(b *networkingv1.IPBlock, ip net.IP) bool {
	if ip == nil {
		return false
	}
	_, cidr, err := net.ParseCIDR(b.CIDR)
	if err != nil || !cidr.Contains(ip) {
		return false
	}
	for _, e := range b.Except {
		if _, ex, err := net.ParseCIDR(e); err == nil && ex.Contains(ip) {
			return false
		}
	}
	return true
}

func peerMatches(peer networkingv1.NetworkPolicyPeer, policyNS string, src netSource) bool {
	if peer.IPBlock != nil {
		return ipBlockContains(peer.IPBlock, src.ip)
	}
	if !src.isPodSource {
		return false
	}
	if peer.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
		nsLabels := labels.Set{"kubernetes.io/metadata.name": src.podNS}
		for k, v := range src.nsLabels {
			nsLabels[k] = v
		}
		if err != nil || !sel.Matches(nsLabels) {
			return false
		}
	} else if src.podNS != policyNS {
		return false
	}
	if peer.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
		if err != nil || !sel.Matches(labels.Set(src.podLabels)) {
			return false
		}
	}
	return true
}

// ingressAllowed evaluates NetworkPolicy semantics for a connection to a pod's port: allowed
// when no policy isolates the pod's ingress, or some rule of a selecting policy admits it.
func ingressAllowed(pols []networkingv1.NetworkPolicy, podLabels map[string]string, port corev1.ContainerPort, src netSource) bool {
	selected := selecting(pols, podLabels, networkingv1.PolicyTypeIngress)
	if len(selected) == 0 {
		return true
	}
	for _, pol := range selected {
		for _, rule := range pol.Spec.Ingress {
			if !portMatches(rule.Ports, port.Name, port.ContainerPort, protocolOf(&port.Protocol)) {
				continue
			}
			if len(rule.From) == 0 {
				return true
			}
			for _, peer := range rule.From {
				if peerMatches(peer, pol.Namespace, src) {
					return true
				}
			}
		}
	}
	return false
}

// egressAllowed evaluates a connection from a pod to an address outside the pod network.
func egressAllowed(pols []networkingv1.NetworkPolicy, podLabels map[string]string, ip string, port int32, proto corev1.Protocol) bool {
	selected := selecting(pols, podLabels, networkingv1.PolicyTypeEgress)
	if len(selected) == 0 {
		return true
	}
	dst := externalIP(ip)
	for _, pol := range selected {
		for _, rule := range pol.Spec.Egress {
			if !portMatches(rule.Ports, "", port, proto) {
				continue
			}
			if len(rule.To) == 0 {
				return true
			}
			for _, peer := range rule.To {
				if peerMatches(peer, pol.Namespace, dst) {
					return true
				}
			}
		}
	}
	return false
}
