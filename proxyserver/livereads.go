package proxyserver

import (
	"context"
	"errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// errLiveReadsLimited is a live read refused by the rate limit: callers answer as for a miss.
var errLiveReadsLimited = errors.New("live reads are rate limited")

// LiveReads is how the proxy reads pods and connectors from the API server when its index of
// marked pods or its informer cache has no match yet: the kubelet can start a pod, and the pod
// send its first request, before the proxy's watch delivered its address or its node (and a
// Connector applied with its first workload may not be cached yet). Anyone who reaches the
// proxy can cause such a miss (an address no marked pod has, a pull no pod justifies), so the
// reads go through a token bucket: a flood of misses costs the API server at most qps
// field-selected Lists per second, and a miss that finds no token is answered as a miss
// (refused; clients and the kubelet retry).
type LiveReads struct {
	Reader  client.Reader
	limiter flowcontrol.RateLimiter
}

// NewLiveReads limits reads through r to limit (each kind of read has its own:
// Options.ConnectorLiveReads and NodePullLiveReads, ForwardOptions.PodLiveReads).
func NewLiveReads(r client.Reader, limit LiveReadsLimit) *LiveReads {
	return &LiveReads{Reader: r, limiter: flowcontrol.NewTokenBucketRateLimiter(limit.QPS, limit.Burst)}
}

func (l *LiveReads) allow() error {
	if !l.limiter.TryAccept() {
		liveReads.WithLabelValues("limited").Inc()
		return errLiveReadsLimited
	}
	liveReads.WithLabelValues("made").Inc()
	return nil
}

// Get implements client.Reader.
func (l *LiveReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := l.allow(); err != nil {
		return err
	}
	return l.Reader.Get(ctx, key, obj, append(opts, fromWatchCache{})...)
}

// List implements client.Reader.
func (l *LiveReads) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := l.allow(); err != nil {
		return err
	}
	return l.Reader.List(ctx, list, append(opts, fromWatchCache{})...)
}

// fromWatchCache asks for resourceVersion "0": the API server answers from its watch cache
// (for pods, through its spec.nodeName index) and never from etcd. A live read only has to see
// what the proxy's watch has not delivered yet, and what it looks for is already there: the
// kubelet learns of a pod's binding from that same watch cache, and a pod's address reaches it
// before the proxy's watch. A quorum read of all pods behind a label and field selector took
// 7.7 ms at p50 and 155 ms at p99 with 30,000 pods (README "Scale").
type fromWatchCache struct{}

func (fromWatchCache) ApplyToList(o *client.ListOptions) {
	if o.Raw == nil {
		o.Raw = &metav1.ListOptions{}
	}
	o.Raw.ResourceVersion = "0"
}

func (fromWatchCache) ApplyToGet(o *client.GetOptions) {
	if o.Raw == nil {
		o.Raw = &metav1.GetOptions{}
	}
	o.Raw.ResourceVersion = "0"
}
