package policies

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// PullRequest is what the node pull listener relays for the container runtime: a read of one
// repository through one connector, on behalf of the node the listener runs on.
type PullRequest struct {
	Node       string
	Connector  ConnectorRef
	Repository string // the repository on the registry (after the connector prefix)
}

// PodNeedsPull reports whether a pod justifies the node pulling this repository through this
// connector (README "The node pull listener"): the pod is scheduled on that node and not finished,
// the webhook marked it for that connector (the status annotation lists it), and one of its
// containers' images is that repository under the connector's proxy path. Visibility of the
// connector from the pod's namespace is checked separately, with CanUseConnector: a label and
// an image name can be written by hand, the visibility rule cannot be.
func PodNeedsPull(pod *MarkedPod, req PullRequest) bool {
	if pod.Node != req.Node || pod.Deleting || pod.Phase == corev1.PodSucceeded || pod.Phase == corev1.PodFailed {
		return false
	}
	if !slices.Contains(pod.StatusConnectors, req.Connector.String()) {
		return false
	}
	return slices.Contains(pod.Pulls, ConnectorPull{Connector: req.Connector, Repository: req.Repository})
}

// podImages lists every image the kubelet may pull for a pod: the containers the webhook
// rewrites, and ephemeral containers (not rewritten, but a hand-written proxy path in one is
// still a reference the pod makes, and the visibility check still applies).
func podImages(spec *corev1.PodSpec) []string {
	var out []string
	for _, c := range allContainers(spec) {
		out = append(out, c.Image)
	}
	for _, c := range spec.EphemeralContainers {
		out = append(out, c.Image)
	}
	return out
}

// NodePullRefusal is the message for a node pull no pod justifies, naming what would allow it.
func NodePullRefusal(req PullRequest) string {
	return fmt.Sprintf("the node pull listener on node %s may pull %s through connector %s only for a running pod on that node that the webhook marked for %s (annotation %s) and whose image names that repository; no such pod was found",
		req.Node, req.Repository, req.Connector, req.Connector, AnnotationConnector)
}

// PodPullRefusal is the per-pod rule's refusal (README "Per-pod pulls"): the pod the kubelet
// pulls for does not need this repository through this connector.
func PodPullRefusal(pod string, req PullRequest) string {
	return fmt.Sprintf("pod %s may not pull %s through connector %s on node %s: it must be a running pod on that node that the webhook marked for %s (annotation %s) and whose image names that repository",
		pod, req.Repository, req.Connector, req.Node, req.Connector, AnnotationConnector)
}
