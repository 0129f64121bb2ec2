package policies

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// MarkedPod is what the proxy's decisions read of a pod the webhook marked: who it is, where it
// runs, its address and the pulls its images make through connectors. The proxy caches this
// instead of the pod: a few hundred bytes against the 10 KiB and more a decoded pod takes
// (README "Scale"). A MarkedPod is never changed once built; a pod's update replaces it.
type MarkedPod struct {
	Namespace, Name string
	UID             types.UID
	// ServiceAccount is the spec's, "" when it names none (the API server then runs the pod as
	// "default").
	ServiceAccount string
	Node           string
	// IP is status.podIP, "" on host networking: a hostNetwork pod's address is its node's, and
	// identifying a caller by it would name every pod on the node.
	IP    string
	Phase corev1.PodPhase
	// Marked: the label LabelProxyInjected is "true".
	Marked   bool
	Deleting bool
	// ConnectorAnnotation is the value of AnnotationConnector, parsed when it is used so that a
	// bad value is refused with its message.
	ConnectorAnnotation string
	// StatusConnectors are the connectors the webhook's status record names; nil when the record
	// is missing or does not parse.
	StatusConnectors []string
	// Pulls are the images (containers, init containers, ephemeral containers) that name a
	// repository under a connector's proxy path.
	Pulls []ConnectorPull
}

// ConnectorPull is an image under a connector's proxy path: the connector and the repository.
type ConnectorPull struct {
	Connector  ConnectorRef
	Repository string
}

// MarkedPodOf reduces a pod to what MarkedPod keeps.
func MarkedPodOf(pod *corev1.Pod) *MarkedPod {
	m := &MarkedPod{
		Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ServiceAccount: pod.Spec.ServiceAccountName, Node: pod.Spec.NodeName,
		Phase:               knownPhase(pod.Status.Phase),
		Marked:              pod.Labels[LabelProxyInjected] == "true",
		Deleting:            pod.DeletionTimestamp != nil,
		ConnectorAnnotation: pod.Annotations[AnnotationConnector],
	}
	if !pod.Spec.HostNetwork {
		m.IP = pod.Status.PodIP
	}
	if status := readStatus(&pod.ObjectMeta); status != nil {
		m.StatusConnectors = status.Connectors
	}
	for _, image := range podImages(&pod.Spec) {
		img, err := ParseImage(image)
		if err != nil {
			continue
		}
		if ref, repo, ok := ParseProxyPath(img.Path); ok {
			m.Pulls = append(m.Pulls, ConnectorPull{Connector: ref, Repository: repo})
		}
	}
	return m
}

// Active reports whether the pod is pending or running and not being deleted: the pods whose
// address identifies them.
func (m *MarkedPod) Active() bool {
	return !m.Deleting && (m.Phase == corev1.PodRunning || m.Phase == corev1.PodPending)
}

// knownPhase returns the package constant for a known phase, so that the string a decoder
// allocated for each pod is not kept for each pod.
func knownPhase(p corev1.PodPhase) corev1.PodPhase {
	for _, known := range []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown} {
		if p == known {
			return known
		}
	}
	return p
}
