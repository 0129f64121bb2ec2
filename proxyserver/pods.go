package proxyserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
)

// podIPIndex indexes the marked pods the proxy caches by their IP.
const podIPIndex = "status.podIP"

// CacheOptions restricts the proxy's Pod informer to pods the webhook marked
// (connectors.cpaas.io/proxy-injected=true): the proxy never caches other pods.
func CacheOptions() cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{policies.LabelProxyInjected: "true"})},
	}}
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// PodsByIP finds the marked pod behind a source address.
type PodsByIP struct {
	// Reader is the label-filtered informer cache, indexed by pod IP.
	Reader client.Reader
	// Live reads pods from the API server once the wait is over without a match: a LiveReads,
	// so that misses anyone can cause stay a bounded load on the API server.
	Live client.Reader
	// Wait is how long a miss waits for the cache to learn the address (ForwardOptions.PodWait);
	// zero goes to Live at once.
	Wait time.Duration
}

// Pod returns the one pending or running, non-hostNetwork, marked pod with this IP. A pod that
// is gone or finished, or whose IP moved, no longer matches; an address two pods claim matches
// neither.
func (p PodsByIP) Pod(ctx context.Context, ip string) (*corev1.Pod, error) {
	pod, err := podWithIP(ctx, p.Reader, ip)
	if pod != nil || err != nil {
		return pod, err
	}
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.NewTimer(p.Wait)
	defer deadline.Stop()
	for pod == nil && err == nil {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			if p.Live != nil {
				if pod, err = podWithIP(ctx, p.Live, ip); errors.Is(err, errLiveReadsLimited) {
					pod, err = nil, nil
				}
			}
			if pod == nil && err == nil {
				err = &noPodError{fmt.Sprintf("no running pod marked %s=true has address %s", policies.LabelProxyInjected, ip)}
			}
			return pod, err
		case <-ticker.C:
			pod, err = podWithIP(ctx, p.Reader, ip)
		}
	}
	return pod, err
}

// noPodError: no single marked pod has the address. Its message is for the caller; any other
// error from Pod is the API server's.
type noPodError struct{ msg string }

func (e *noPodError) Error() string { return e.msg }

// podWithIP is the single matching pod, nil without one.
func podWithIP(ctx context.Context, reader client.Reader, ip string) (*corev1.Pod, error) {
	var pods corev1.PodList
	if err := reader.List(ctx, &pods, client.MatchingLabels{policies.LabelProxyInjected: "true"}, client.MatchingFields{podIPIndex: ip}); err != nil {
		return nil, err
	}
	var found *corev1.Pod
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.Spec.HostNetwork || pod.DeletionTimestamp != nil || pod.Status.PodIP != ip ||
			(pod.Status.Phase != corev1.PodRunning && pod.Status.Phase != corev1.PodPending) {
			continue
		}
		if found != nil {
			return nil, &noPodError{fmt.Sprintf("two pods claim address %s", ip)}
		}
		found = pod
	}
	return found, nil
}

func indexPodIP(obj client.Object) []string {
	pod := obj.(*corev1.Pod)
	if pod.Status.PodIP == "" || pod.Spec.HostNetwork {
		return nil
	}
	return []string{pod.Status.PodIP}
}
