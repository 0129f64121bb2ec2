package proxyserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
)

// podIPIndex indexes the marked pods the proxy caches by their IP.
const podIPIndex = "status.podIP"

// CacheOptions restricts the proxy's Pod informer to pods the webhook marked
// (connectors.cpaas.io/proxy-injected=true), and keeps of each only what the proxy's decisions
// read (trimPod): the proxy never caches other pods, and a cached pod costs a tenth of its size.
func CacheOptions() cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{policies.LabelProxyInjected: "true"}), Transform: trimPod},
	}}
}

// trimPod keeps of a marked pod what identification by address (pods.go, identify.go) and the
// node pull rule (policies.PodNeedsPull) read: names, the mark, the connector and status
// annotations, node, ServiceAccount, host networking, container images, phase and addresses.
// managedFields alone are a quarter of a pod; env, volumes, probes and conditions are most of
// the rest. Anything else is not a pod and passes unchanged.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	var ephemeral []corev1.EphemeralContainer
	for _, c := range pod.Spec.EphemeralContainers {
		ephemeral = append(ephemeral, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image}})
	}
	return &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			DeletionTimestamp: pod.DeletionTimestamp,
			Labels:            keep(pod.Labels, policies.LabelProxyInjected),
			Annotations:       trimAnnotations(pod.Annotations),
		},
		Spec: corev1.PodSpec{
			NodeName: pod.Spec.NodeName, HostNetwork: pod.Spec.HostNetwork, ServiceAccountName: pod.Spec.ServiceAccountName,
			InitContainers:      trimContainers(pod.Spec.InitContainers),
			Containers:          trimContainers(pod.Spec.Containers),
			EphemeralContainers: ephemeral,
		},
		Status: corev1.PodStatus{Phase: pod.Status.Phase, PodIP: pod.Status.PodIP, PodIPs: pod.Status.PodIPs},
	}, nil
}

// trimContainers keeps each container's name and image.
func trimContainers(cs []corev1.Container) []corev1.Container {
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i] = corev1.Container{Name: c.Name, Image: c.Image}
	}
	return out
}

// trimAnnotations keeps the connector annotation and, of the webhook's status record, only the
// connectors it names (what policies.PodNeedsPull reads), re-encoded small: every node pull
// parses it for each pod on the node. A record that does not parse is dropped, which is what
// the rule makes of it anyway.
func trimAnnotations(annotations map[string]string) map[string]string {
	out := keep(annotations, policies.AnnotationConnector)
	raw, ok := annotations[policies.AnnotationStatus]
	if !ok {
		return out
	}
	var status policies.Status
	if json.Unmarshal([]byte(raw), &status) != nil {
		return out
	}
	small, err := json.Marshal(policies.Status{Connectors: status.Connectors})
	if err != nil {
		return out
	}
	if out == nil {
		out = map[string]string{}
	}
	out[policies.AnnotationStatus] = string(small)
	return out
}

// keep returns the entries of m under keys, nil when there are none.
func keep(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = make(map[string]string, len(keys))
			}
			out[k] = v
		}
	}
	return out
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
	// The decision only reads: no copy of the cached pods (the live reader ignores the option).
	if err := reader.List(ctx, &pods, client.MatchingLabels{policies.LabelProxyInjected: "true"}, client.MatchingFields{podIPIndex: ip}, client.UnsafeDisableDeepCopy); err != nil {
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
