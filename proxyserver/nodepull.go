package proxyserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/podindex"
)

// NodePulls authorises what the node pull listeners relay (README "The node pull listener"). A
// listener holds no Harbor credentials and no rights of its own beyond its pod-bound token; the
// token's TokenReview names the node, and a pull is allowed only when a pod scheduled on that
// node, marked by the webhook for that connector, names that repository in an image, and the
// connector is visible from that pod's namespace. Everything else is DENIED.
type NodePulls struct {
	// Forwarders are the ServiceAccounts ("<namespace>/<name>") the node listeners run as.
	Forwarders map[string]bool
	// Pods holds the marked pods, by node and by name.
	Pods *podindex.Index
	// Live reads pods from the API server when the index has no match: the kubelet can start
	// pulling before the proxy's watch delivered the pod's binding to the node.
	Live client.Reader
	// Access applies the visibility rule to the namespace of each candidate pod.
	Access *access.Resolver
	// Nodes reads Node metadata (the label policies.LabelPullIdentity) from the informer cache;
	// nil pulls per node everywhere.
	Nodes client.Reader
}

// IsForwarder reports whether a verified caller is a node pull listener.
func (n *NodePulls) IsForwarder(id identity.Identity) bool {
	return n != nil && n.Forwarders[id.String()]
}

// Authorize decides one relayed request and returns the namespace of the pod that justifies
// it, from which the connector is then resolved. pod is the pulling pod's identity when the
// listener relayed the kubelet's per-pod credential (README "Per-pod pulls"), else nil.
func (n *NodePulls) Authorize(ctx context.Context, id identity.Identity, pod *identity.Identity, method string, route Route) (string, error) {
	defer observeDecision("node-pull", time.Now())
	if method != http.MethodGet && method != http.MethodHead || (route.Kind != KindManifest && route.Kind != KindBlob) {
		return "", &pullRefusedError{msg: fmt.Sprintf("the node pull listener (%s) may only read manifests and blobs, not %s %s", id, method, route.Kind)}
	}
	if id.NodeName == "" {
		return "", &pullRefusedError{msg: fmt.Sprintf("the node pull listener's token (%s) names no node: it must be a pod-bound token from an API server that records the node (Kubernetes 1.30 or later)", id)}
	}
	req := policies.PullRequest{Node: id.NodeName, Connector: route.Connector, Repository: route.Repository}
	if pod != nil {
		return n.authorizePod(ctx, *pod, req)
	}
	perPod, err := n.pullsPerPod(ctx, id.NodeName)
	if err != nil {
		return "", err
	}
	if perPod {
		return "", &pullRefusedError{unauthenticated: true, msg: fmt.Sprintf("node %s pulls per pod (label %s=%s) and the kubelet sent no credential for this pull: a pod without a ServiceAccount (a static pod) cannot pull through a connector there; otherwise configure the kubelet with connectors-credential-provider (README \"Per-pod pulls\")",
			id.NodeName, policies.LabelPullIdentity, policies.PullIdentityPod)}
	}
	if namespace, err := n.justifiedBy(ctx, n.Pods.OnNode(req.Node), req); err != nil || namespace != "" {
		return namespace, err
	}
	// The index can lag the kubelet: a pod bound a moment ago may be pulling before the watch
	// delivered its binding. Such a pod is Pending (the kubelet reports Running only once its
	// containers started, which needs their images), so the live read asks the API server's
	// watch cache for the node's Pending marked pods alone: usually none, a few bytes to send and
	// decode where the node's whole list was a few hundred KiB. A later pull of a Running pod
	// (a container restarted with imagePullPolicy Always) is of a pod the index has long held.
	if n.Live != nil {
		pods, err := listMarked(ctx, n.Live, client.MatchingFields{"spec.nodeName": req.Node, "status.phase": string(corev1.PodPending)})
		switch {
		case errors.Is(err, errLiveReadsLimited):
			// answered as a pull no pod justifies
		case err != nil:
			return "", fmt.Errorf("listing pods on node %s: %w", req.Node, err)
		default:
			if namespace, err := n.justifiedBy(ctx, pods, req); err != nil || namespace != "" {
				return namespace, err
			}
		}
	}
	return "", &pullRefusedError{msg: policies.NodePullRefusal(req)}
}

// pullsPerPod reads the node's pull identity label from the cache. A node the cache does not
// hold yet pulls per node, as every node did before the label existed.
func (n *NodePulls) pullsPerPod(ctx context.Context, node string) (bool, error) {
	if n.Nodes == nil {
		return false, nil
	}
	meta := nodeMetadata()
	// Read only: no copy of the cached Node's labels and annotations per pull.
	if err := n.Nodes.Get(ctx, client.ObjectKey{Name: node}, meta, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading node %s: %w", node, err)
	}
	return meta.Labels[policies.LabelPullIdentity] == policies.PullIdentityPod, nil
}

// authorizePod is the per-pod rule: the token the kubelet requested for the pulling pod must be
// bound to a pod on this listener's node, and that pod alone must need the pull (marked for the
// connector, naming the repository) in a namespace that may use the connector.
func (n *NodePulls) authorizePod(ctx context.Context, pod identity.Identity, req policies.PullRequest) (string, error) {
	if pod.PodName == "" || pod.PodUID == "" {
		return "", &pullRefusedError{msg: fmt.Sprintf("the credential the kubelet sent for this pull (%s) is not a pod-bound token: connectors-credential-provider passes the pulling pod's token", pod)}
	}
	name := pod.Namespace + "/" + pod.PodName
	if pod.NodeName != req.Node {
		return "", &pullRefusedError{msg: fmt.Sprintf("pod %s's token is bound to node %q, but node %s's listener relayed it", name, pod.NodeName, req.Node)}
	}
	found, err := n.pod(ctx, pod)
	if err != nil {
		return "", fmt.Errorf("reading pod %s: %w", name, err)
	}
	if found == nil {
		return "", &pullRefusedError{msg: policies.PodPullRefusal(name, req)}
	}
	switch err := n.entitles(ctx, found, req); {
	case err == nil:
		return found.Namespace, nil
	case errors.Is(err, errPullNotNeeded):
		return "", &pullRefusedError{msg: policies.PodPullRefusal(name, req)}
	case access.IsNotVisible(err):
		return "", &pullRefusedError{msg: err.Error()}
	default:
		return "", err
	}
}

// errPullNotNeeded: the pod does not need this pull (policies.PodNeedsPull).
var errPullNotNeeded = errors.New("the pod does not need this pull")

// entitles is the rule both modes apply to a pod: nil when it needs the pull and its namespace
// may use the connector; errPullNotNeeded, the visibility seam's NotVisibleError, or the error
// reading the connector otherwise.
func (n *NodePulls) entitles(ctx context.Context, pod *policies.MarkedPod, req policies.PullRequest) error {
	if !policies.PodNeedsPull(pod, req) {
		return errPullNotNeeded
	}
	return n.Access.CheckVisible(ctx, pod.Namespace, req.Connector)
}

// pod is the marked pod the token is bound to, from the index, else read once live (the kubelet
// can pull before the watch delivered the pod); nil when there is none with that UID.
func (n *NodePulls) pod(ctx context.Context, id identity.Identity) (*policies.MarkedPod, error) {
	if pod := n.Pods.Get(id.Namespace, id.PodName); pod != nil && string(pod.UID) == id.PodUID && pod.Marked {
		return pod, nil
	}
	if n.Live == nil {
		return nil, nil
	}
	var pod corev1.Pod
	err := n.Live.Get(ctx, client.ObjectKey{Namespace: id.Namespace, Name: id.PodName}, &pod)
	switch {
	case apierrors.IsNotFound(err), errors.Is(err, errLiveReadsLimited):
		return nil, nil
	case err != nil:
		return nil, err
	}
	if found := policies.MarkedPodOf(&pod); string(found.UID) == id.PodUID && found.Marked {
		return found, nil
	}
	return nil, nil
}

// pullRefusedError: the rule refuses the pull; its message is for the container runtime (and so
// the pod's events). Any other error from Authorize is the API server's, for the log only.
type pullRefusedError struct {
	msg string
	// unauthenticated: the pull needs a credential it did not carry (UNAUTHORIZED, with the
	// challenge that makes the runtime send the kubelet's).
	unauthenticated bool
}

func (e *pullRefusedError) Error() string { return e.msg }

// justifiedBy is the namespace of a pod of pods that needs the pull and may use the connector,
// "" when none does.
func (n *NodePulls) justifiedBy(ctx context.Context, pods []*policies.MarkedPod, req policies.PullRequest) (string, error) {
	for _, pod := range pods {
		switch err := n.entitles(ctx, pod, req); {
		case err == nil:
			return pod.Namespace, nil
		case !errors.Is(err, errPullNotNeeded) && !access.IsNotVisible(err):
			return "", err
		}
	}
	return "", nil
}

// nodeMetadata is a Node read by metadata only.
func nodeMetadata() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}}
}
