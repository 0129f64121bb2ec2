package proxyserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/proxyserver/podindex"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// PodsByIP finds the marked pod behind a source address.
type PodsByIP struct {
	// Index holds the marked pods, by IP.
	Index *podindex.Index
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
func (p PodsByIP) Pod(ctx context.Context, ip string) (*policies.MarkedPod, error) {
	defer observeDecision("pod-address", time.Now())
	pod, err := onePod(p.Index.WithIP(ip), ip)
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
				pods, err := listMarked(ctx, p.Live, client.MatchingFields{"status.podIP": ip})
				if errors.Is(err, errLiveReadsLimited) {
					return nil, p.missing(ip)
				}
				if err != nil {
					return nil, err
				}
				pod, err = onePod(pods, ip)
			}
			if pod == nil && err == nil {
				err = p.missing(ip)
			}
			return pod, err
		case <-ticker.C:
			pod, err = onePod(p.Index.WithIP(ip), ip)
		}
	}
	return pod, err
}

// noPodError: no single marked pod has the address. Its message is for the caller; any other
// error from Pod is the API server's.
type noPodError struct{ msg string }

func (e *noPodError) Error() string { return e.msg }

func (p PodsByIP) missing(ip string) error {
	return &noPodError{fmt.Sprintf("no running pod marked %s=true has address %s", policies.LabelProxyInjected, ip)}
}

// onePod is the single active pod of pods holding ip, nil without one (pods come from the index
// or listMarked, so all are marked).
func onePod(pods []*policies.MarkedPod, ip string) (*policies.MarkedPod, error) {
	var found *policies.MarkedPod
	for _, pod := range pods {
		if pod.IP != ip || !pod.Active() {
			continue
		}
		if found != nil {
			return nil, &noPodError{fmt.Sprintf("two pods claim address %s", ip)}
		}
		found = pod
	}
	return found, nil
}

// listMarked lists the marked pods that match opts from the API server (a LiveReads), reduced
// as the index holds them.
func listMarked(ctx context.Context, live client.Reader, opts ...client.ListOption) ([]*policies.MarkedPod, error) {
	var pods corev1.PodList
	if err := live.List(ctx, &pods, append(opts, client.MatchingLabelsSelector{Selector: podindex.Marked})...); err != nil {
		return nil, err
	}
	out := make([]*policies.MarkedPod, len(pods.Items))
	for i := range pods.Items {
		out[i] = policies.MarkedPodOf(&pods.Items[i])
	}
	return out, nil
}
