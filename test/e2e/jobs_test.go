//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
)

// jobSpec is a one-container Job running a busybox shell script.
type jobSpec struct {
	namespace, name, image, script string
	connector                      string // the annotation's value; "" leaves the Job alone
	pullPolicy                     corev1.PullPolicy
	deadline                       time.Duration
	mutate                         func(*batchv1.Job)
}

func (s jobSpec) build() *batchv1.Job {
	deadline := s.deadline
	if deadline == 0 {
		deadline = 4 * time.Minute
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: s.name},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr(int32(0)),
			ActiveDeadlineSeconds: ptr(int64(deadline.Seconds())),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "main", Image: s.image, ImagePullPolicy: s.pullPolicy,
					Command: []string{"/bin/sh", "-c", "set -e; mkdir -p /work; cd /work; " + s.script},
				}},
			}},
		},
	}
	if s.connector != "" {
		job.Annotations = map[string]string{policies.AnnotationConnector: s.connector}
	}
	if s.mutate != nil {
		s.mutate(job)
	}
	return job
}

// jobResult is how a Job ended, with what a human would look at.
type jobResult struct {
	succeeded bool
	pod       corev1.Pod
	logs      string
	events    string // the pod's events, one per line
}

// runJob creates a Job and waits until it succeeds or fails (or its pod cannot pull its image).
func runJob(t *testing.T, s jobSpec) jobResult {
	t.Helper()
	job := createJob(t, s)
	timeout := s.deadline + time.Minute
	if s.deadline == 0 {
		timeout = 5 * time.Minute
	}
	return awaitJob(t, job, timeout, true)
}

// createJob creates the Job (admission must admit it), deleted when the test ends.
func createJob(t *testing.T, s jobSpec) *batchv1.Job {
	t.Helper()
	c := w.node.Client
	job := s.build()
	require.NoError(t, c.Create(context.Background(), job), "creating Job %s/%s", s.namespace, s.name)
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), job, client.PropagationPolicy(metav1.DeletePropagationBackground))
	})
	return job
}

// awaitJob waits until the Job succeeds or fails; with stopOnPullError also when its pod cannot
// pull its image (the kubelet would retry forever), else the kubelet's pull retries run on.
func awaitJob(t *testing.T, job *batchv1.Job, timeout time.Duration, stopOnPullError bool) jobResult {
	t.Helper()
	ctx := context.Background()
	c := w.node.Client
	var res jobResult
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, keyOf(job), job); err != nil {
			return false, err
		}
		for _, cond := range job.Status.Conditions {
			if cond.Status != corev1.ConditionTrue {
				continue
			}
			switch cond.Type {
			case batchv1.JobComplete:
				res.succeeded = true
				return true, nil
			case batchv1.JobFailed:
				return true, nil
			}
		}
		if !stopOnPullError {
			return false, nil
		}
		pod, ok := jobPod(ctx, t, job)
		return ok && pullFailed(pod), nil
	})
	pod, ok := jobPod(ctx, t, job)
	if ok {
		res.pod = *pod
		res.events = podEvents(ctx, t, pod)
		res.logs = podLogs(ctx, pod, "")
	}
	if !res.succeeded {
		// A Job past its deadline deletes its pod, and the pod's events with it: say why it ended.
		for _, cond := range job.Status.Conditions {
			res.events += fmt.Sprintf("Job condition %s=%s %s: %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
		}
	}
	require.NoError(t, err, "Job %s/%s did not finish; pod events:\n%s\nlogs:\n%s", job.Namespace, job.Name, res.events, res.logs)
	return res
}

func jobPod(ctx context.Context, t testing.TB, job *batchv1.Job) (*corev1.Pod, bool) {
	var pods corev1.PodList
	require.NoError(t, w.node.Client.List(ctx, &pods, client.InNamespace(job.Namespace), client.MatchingLabels{"batch.kubernetes.io/job-name": job.Name}))
	if len(pods.Items) == 0 {
		return nil, false
	}
	// A Job that retried has several pods: the newest says how it ended.
	newest := &pods.Items[0]
	for i := range pods.Items {
		if newest.CreationTimestamp.Before(&pods.Items[i].CreationTimestamp) {
			newest = &pods.Items[i]
		}
	}
	return newest, true
}

// pullFailed reports a container stuck on its image (the kubelet retries forever otherwise).
func pullFailed(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if wt := cs.State.Waiting; wt != nil && (wt.Reason == "ErrImagePull" || wt.Reason == "ImagePullBackOff") {
			return true
		}
	}
	return false
}

func podEvents(ctx context.Context, t *testing.T, pod *corev1.Pod) string {
	var events corev1.EventList
	require.NoError(t, w.node.Client.List(ctx, &events, client.InNamespace(pod.Namespace)))
	var lines []string
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == "Pod" && e.InvolvedObject.Name == pod.Name {
			lines = append(lines, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// podLogs is a container's log ("" for the pod's only container), or why there is none.
func podLogs(ctx context.Context, pod *corev1.Pod, container string) string {
	raw, err := w.node.Clientset.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	return string(raw)
}

func keyOf(obj client.Object) client.ObjectKey { return client.ObjectKeyFromObject(obj) }

// waitFor polls cond every 500ms until it holds, fails, or timeout passes; why explains a
// timeout.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error), why func() string) error {
	err := waitForEvery(ctx, 500*time.Millisecond, timeout, cond)
	if err != nil && why != nil {
		return fmt.Errorf("%s: %w", why(), err)
	}
	return err
}

// waitForEvery polls cond every interval until it holds, fails, or timeout passes.
func waitForEvery(ctx context.Context, interval, timeout time.Duration, cond func() (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(context.Context) (bool, error) { return cond() })
}

// podSummary lists a namespace's pods with their phase and waiting reasons, for timeouts.
func podSummary(ctx context.Context, c client.Client, ns string) string {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	var out []string
	for _, p := range pods.Items {
		s := p.Namespace + "/" + p.Name + " " + string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Waiting != nil {
				s += fmt.Sprintf(" [%s: %s %s]", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func ptr[T any](v T) *T { return &v }
