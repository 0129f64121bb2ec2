package proxyserver

import (
	"context"
	"fmt"

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
type PodsByIP struct{ Reader client.Reader }

// Pod returns the one running, non-hostNetwork, marked pod with this IP. A pod that is gone, not
// Running, or whose IP moved no longer matches; an address two pods claim matches neither.
func (p PodsByIP) Pod(ctx context.Context, ip string) (*corev1.Pod, error) {
	var pods corev1.PodList
	if err := p.Reader.List(ctx, &pods, client.MatchingFields{podIPIndex: ip}); err != nil {
		return nil, err
	}
	var found *corev1.Pod
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.Spec.HostNetwork || pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil || pod.Status.PodIP != ip {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("two pods claim address %s", ip)
		}
		found = pod
	}
	if found == nil {
		return nil, fmt.Errorf("no running pod marked %s=true has address %s", policies.LabelProxyInjected, ip)
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
