package proxyserver

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/proxyserver/identity"
	"github.com/alauda/harbor-connector/proxyserver/intercept"
	"github.com/alauda/harbor-connector/proxyserver/podindex"
	"github.com/alauda/harbor-connector/proxyserver/upstream"
)

// +kubebuilder:rbac:groups=connectors.alauda.io,resources=connectors,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// Secrets only in the credentials namespace (access.DefaultCredentialsNamespace), which holds
// the manager's copies and nothing else; none in connectors-system, where the product's keys are.
// +kubebuilder:rbac:groups="",namespace=connectors-credentials,resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// Node labels only (metadata), for the per-pod pull identity (policies.LabelPullIdentity).
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch

// CacheOptionsFor is the proxy manager's cache: Secrets (which the proxy watches by metadata
// only) in credentialsNamespace alone, the one namespace its Role lets it read Secrets in, and
// no object's managedFields (a third of a Connector or Namespace as stored, and read by no
// decision). Marked pods are not in it: the proxy keeps them in a podindex.Index.
func CacheOptionsFor(credentialsNamespace string) cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{credentialsNamespace: {}}},
		},
	}
}

// NewHandler wires the handler to a manager: Connectors and Namespaces from its informer cache
// (through the access seam), callers verified by TokenReview, and connectors' credentials read
// live from the manager's copies in opts.CredentialsNamespace (access.LoadMirroredCredentials; the
// proxy never reads a Connector's own Secrets), which it watches by metadata: a change drops the
// connector's upstream state, tokens included. mgr's cache must come from
// CacheOptionsFor(opts.CredentialsNamespace).
func NewHandler(ctx context.Context, mgr ctrl.Manager, opts Options) (*Handler, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	credentialsNamespace := opts.CredentialsNamespace
	clientset, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	live := mgr.GetAPIReader()
	store := &upstream.Store{
		Load: func(ctx context.Context, c *v1alpha1.Connector) (access.Credentials, error) {
			return access.LoadMirroredCredentials(ctx, live, credentialsNamespace, c)
		},
		Dial: opts.Dial, MaxTokenFetches: opts.MaxTokenFetches,
	}

	secrets, err := mgr.GetCache().GetInformer(ctx, &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}})
	if err != nil {
		return nil, fmt.Errorf("watching Secret metadata: %w", err)
	}
	if _, err := secrets.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		// Add too: a copy created again (after a Connector was recreated, or deleted by hand)
		// must not leave a Registry built before it in place.
		AddFunc:    func(obj any) { invalidateSecret(store, obj) },
		UpdateFunc: func(_, obj any) { invalidateSecret(store, obj) },
		DeleteFunc: func(obj any) { invalidateSecret(store, obj) },
	}); err != nil {
		return nil, err
	}
	connectors, err := mgr.GetCache().GetInformer(ctx, &v1alpha1.Connector{})
	if err != nil {
		return nil, fmt.Errorf("watching Connectors: %w", err)
	}
	if _, err := connectors.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if o := objectOf(obj); o != nil {
				store.InvalidateConnector(policies.ConnectorRef{Namespace: o.GetNamespace(), Name: o.GetName()})
			}
		},
	}); err != nil {
		return nil, err
	}
	pods, livePods, err := markedPods(mgr)
	if err != nil {
		return nil, err
	}
	if _, err := mgr.GetCache().GetInformer(ctx, &corev1.Namespace{}); err != nil {
		return nil, fmt.Errorf("watching Namespaces: %w", err)
	}
	// A cache miss is read once from the API server, as the webhook and the CSI driver do
	// (`kubectl apply -f dir/` creates a Connector and its first workload in the same second),
	// through a token bucket as pod reads are: anyone can name a connector that does not exist.
	resolver := &access.Resolver{Source: &access.CachedSource{Cache: mgr.GetClient(), Live: NewLiveReads(mgr.GetAPIReader(), opts.ConnectorLiveReads)}}
	var nodePulls *NodePulls
	if len(opts.NodeForwarders) > 0 {
		// Node labels (the pull identity) by metadata only: a few hundred bytes per node.
		if _, err := mgr.GetCache().GetInformer(ctx, nodeMetadata()); err != nil {
			return nil, fmt.Errorf("watching Node metadata: %w", err)
		}
		nodePulls = &NodePulls{Forwarders: map[string]bool{}, Pods: pods, Live: NewLiveReads(livePods, opts.NodePullLiveReads), Access: resolver, Nodes: mgr.GetClient()}
		for _, sa := range opts.NodeForwarders {
			nodePulls.Forwarders[sa] = true
		}
	}
	reviewer := &identity.Reviewer{Client: clientset, Audiences: opts.Audiences, PositiveTTL: opts.TokenReviewTTL, NegativeTTL: opts.TokenReviewNegativeTTL}
	h := newHandler(reviewer, resolver, nodePulls, store, opts, mgr.GetLogger().WithName("proxy"))
	h.pods, h.livePods = pods, livePods
	return h, nil
}

// NewForward builds the forward listener around handler (NewHandler's) from o: the interception
// CA in o.InterceptCADir, the tunnel policy, and, with o.PodIdentity, callers identified by
// source address from handler's index of marked pods, with live reads limited as o.PodLiveReads.
func NewForward(handler *Handler, mgr ctrl.Manager, o ForwardOptions) (*Forward, error) {
	mode := o.TunnelMode
	if mode != policies.TunnelPublic && mode != policies.TunnelDeny && mode != policies.TunnelAllowList {
		return nil, fmt.Errorf("--tunnel-policy=%q: want public, deny or allowlist", mode)
	}
	var cidrs []*net.IPNet
	for _, c := range o.ClusterCIDRs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("--cluster-cidrs: %q: %w", c, err)
		}
		cidrs = append(cidrs, n)
	}
	fwd := &Forward{
		Handler:    handler,
		Authority:  &intercept.Authority{CertFile: filepath.Join(o.InterceptCADir, "tls.crt"), KeyFile: filepath.Join(o.InterceptCADir, "tls.key"), PermittedDomains: o.PermittedDomains},
		Tunnels:    policies.TunnelPolicy{Mode: mode, Allow: o.TunnelAllow, ClusterCIDRs: cidrs},
		DialTunnel: (&net.Dialer{Timeout: o.TunnelDialTimeout}).DialContext,
	}
	if o.PodIdentity {
		fwd.Pods = &PodsByIP{Index: handler.pods, Live: NewLiveReads(handler.livePods, o.PodLiveReads), Wait: o.PodWait}
	}
	return fwd, nil
}

// markedPods starts the index of marked pods with mgr, and returns it with the reader of pods it
// does not hold yet (a node's Pending pods, the pods with an address); both use protobuf: the
// index's initial list is every marked pod of the cluster.
func markedPods(mgr ctrl.Manager) (*podindex.Index, client.Reader, error) {
	cfg := protobuf(mgr.GetConfig())
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	pods := podindex.New(clientset)
	if err := mgr.Add(pods); err != nil {
		return nil, nil, fmt.Errorf("watching marked pods: %w", err)
	}
	live, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, nil, err
	}
	return pods, live, nil
}

// protobuf is cfg asking for protobuf, which built-in types (pods) are served in: a third of
// JSON's bytes and less work to decode.
func protobuf(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return c
}

func invalidateSecret(store *upstream.Store, obj any) {
	if o := objectOf(obj); o != nil {
		store.InvalidateSecret(o.GetNamespace(), o.GetName())
	}
}

func objectOf(obj any) client.Object {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, _ := obj.(client.Object)
	return o
}
