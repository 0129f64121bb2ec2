package proxyserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/proxyserver/identity"
)

// podNodeIndex indexes the marked pods the proxy caches by the node they are scheduled on.
const podNodeIndex = "spec.nodeName"

// NodePulls authorises what the node pull listeners relay (README "The node pull listener"). A
// listener holds no Harbor credentials and no rights of its own beyond its pod-bound token; the
// token's TokenReview names the node, and a pull is allowed only when a pod scheduled on that
// node, marked by the webhook for that connector, names that repository in an image, and the
// connector is visible from that pod's namespace. Everything else is DENIED.
type NodePulls struct {
	// Forwarders are the ServiceAccounts ("<namespace>/<name>") the node listeners run as.
	Forwarders map[string]bool
	// Pods reads marked pods (the label-filtered informer cache, indexed by node).
	Pods client.Reader
	// Live reads pods from the API server when the cache has no match: the kubelet can start
	// pulling before the proxy's informer has seen the pod's binding to the node.
	Live client.Reader
	// Access applies the visibility rule to the namespace of each candidate pod.
	Access *access.Resolver
}

// IsForwarder reports whether a verified caller is a node pull listener.
func (n *NodePulls) IsForwarder(id identity.Identity) bool {
	return n != nil && n.Forwarders[id.String()]
}

// Authorize decides one relayed request and returns the namespace of the pod that justifies
// it, from which the connector is then resolved.
func (n *NodePulls) Authorize(ctx context.Context, id identity.Identity, method string, route Route) (string, error) {
	if method != http.MethodGet && method != http.MethodHead || (route.Kind != KindManifest && route.Kind != KindBlob) {
		return "", &pullRefusedError{fmt.Sprintf("the node pull listener (%s) may only read manifests and blobs, not %s %s", id, method, route.Kind)}
	}
	if id.NodeName == "" {
		return "", &pullRefusedError{fmt.Sprintf("the node pull listener's token (%s) names no node: it must be a pod-bound token from an API server that records the node (Kubernetes 1.30 or later)", id)}
	}
	req := policies.PullRequest{Node: id.NodeName, Connector: route.Connector, Repository: route.Repository}
	for _, reader := range []client.Reader{n.Pods, n.Live} {
		if reader == nil {
			continue
		}
		namespace, err := n.justifiedBy(ctx, reader, req)
		if errors.Is(err, errLiveReadsLimited) {
			continue // answered as a pull no pod justifies
		}
		if err != nil {
			return "", fmt.Errorf("listing pods on node %s: %w", req.Node, err)
		}
		if namespace != "" {
			return namespace, nil
		}
	}
	return "", &pullRefusedError{policies.NodePullRefusal(req)}
}

// pullRefusedError: the rule refuses the pull; its message is for the container runtime (and so
// the pod's events). Any other error from Authorize is the API server's, for the log only.
type pullRefusedError struct{ msg string }

func (e *pullRefusedError) Error() string { return e.msg }

// justifiedBy is the namespace of a pod on the node that needs the pull and may use the
// connector, "" when none does.
func (n *NodePulls) justifiedBy(ctx context.Context, reader client.Reader, req policies.PullRequest) (string, error) {
	var pods corev1.PodList
	// The rule only reads: no copy of the node's cached pods per pull (the live reader ignores
	// the option).
	if err := reader.List(ctx, &pods, client.MatchingLabels{policies.LabelProxyInjected: "true"}, client.MatchingFields{podNodeIndex: req.Node}, client.UnsafeDisableDeepCopy); err != nil {
		return "", err
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !policies.PodNeedsPull(pod, req) {
			continue
		}
		switch err := n.Access.CheckVisible(ctx, pod.Namespace, req.Connector); {
		case err == nil:
			return pod.Namespace, nil
		case !access.IsNotVisible(err):
			return "", err
		}
	}
	return "", nil
}

func indexPodNode(obj client.Object) []string {
	if node := obj.(*corev1.Pod).Spec.NodeName; node != "" {
		return []string{node}
	}
	return nil
}
