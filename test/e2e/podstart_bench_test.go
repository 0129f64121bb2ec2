//go:build e2e

package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/node"
)

// The pod-start benchmark's image: busybox plus two layers of random (incompressible) bytes,
// three layers and about 100 MiB in all, as issue 14 sizes it.
const (
	bigRepository = "big"
	bigLayerBytes = 48 << 20
	benchRounds   = 3
	directNS      = "bench-direct" // not opted in: pulls with a pull secret, as without the product
)

// BenchmarkPodStart measures the time from creating a Job to its container running, for the
// same image in the test Harbor pulled (a) through the connector's node path (the webhook's
// rewrite, the node listener, the central proxy) and (b) directly by the kubelet with a pull
// secret holding the robot's credentials. The node's image store is emptied before each pod;
// the two alternate, and each figure is the median of benchRounds. Run by make bench-cluster.
func BenchmarkPodStart(b *testing.B) {
	ctx := context.Background()
	image := w.harborHost + "/" + project + "/" + bigRepository + ":v1"
	require.NoError(b, w.pushBigImage(ctx, image))
	require.NoError(b, w.directPullNamespace(ctx))

	var nodePath, direct []time.Duration
	for round := range benchRounds {
		for _, v := range []struct {
			into *[]time.Duration
			spec jobSpec
		}{
			{&nodePath, jobSpec{namespace: nsA, name: fmt.Sprintf("start-node-%d", round), image: image, connector: connectorName}},
			{&direct, jobSpec{namespace: directNS, name: fmt.Sprintf("start-direct-%d", round), image: image, mutate: func(j *batchv1.Job) {
				j.Spec.Template.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "harbor-pull"}}
			}}},
		} {
			require.NoError(b, w.node.RemoveImages(ctx, "/"+project+"/"+bigRepository))
			d, err := w.timePodStart(ctx, b, v.spec)
			require.NoError(b, err)
			*v.into = append(*v.into, d)
		}
	}
	a, d := median(nodePath), median(direct)
	ratio := a.Seconds() / d.Seconds()
	b.ReportMetric(a.Seconds(), "node-path-s")
	b.ReportMetric(d.Seconds(), "direct-s")
	b.ReportMetric(ratio, "node/direct")
	fmt.Printf("pod start, 3 layers ~%d MiB, image store emptied before each, median of %d:\n", (2*bigLayerBytes)>>20, benchRounds)
	fmt.Printf("  (a) node path    %6.2fs  %v\n  (b) pull secret  %6.2fs  %v\n  (a)/(b)          %6.2f  (goal <= 1.25)\n", a.Seconds(), nodePath, d.Seconds(), direct, ratio)
}

// pushBigImage pushes the benchmark's image to the test Harbor with the robot's credentials.
func (w *world) pushBigImage(ctx context.Context, ref string) error {
	base, err := node.BuildImage(node.BusyboxFiles(), []string{"/bin/sh"}, nil)
	if err != nil {
		return err
	}
	img := base
	for range 2 {
		layer, err := random.Layer(bigLayerBytes, types.DockerLayer)
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	return w.pushToHarbor(ctx, img, ref)
}

// directPullNamespace makes the namespace whose pods pull from Harbor themselves, with the
// robot's credentials in a pull secret: what teams do without the product.
func (w *world) directPullNamespace(ctx context.Context) error {
	c := w.node.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: directNS}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	auth := base64.StdEncoding.EncodeToString([]byte(w.robot + ":" + w.secret))
	config, err := json.Marshal(map[string]any{"auths": map[string]any{w.harborHost: map[string]string{"auth": auth}}})
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: directNS, Name: "harbor-pull"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: config},
	}
	if err := c.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return w.node.WaitForServiceAccount(ctx, directNS)
}

// timePodStart creates the Job and returns the time until its container runs, polled every
// 50 ms; then it deletes the Job and waits for the pod to be gone, so the image is unused.
func (w *world) timePodStart(ctx context.Context, b *testing.B, s jobSpec) (time.Duration, error) {
	c := w.node.Client
	s.script = "sleep 1"
	job := s.build()
	start := time.Now()
	if err := c.Create(ctx, job); err != nil {
		return 0, err
	}
	var took time.Duration
	var pod *corev1.Pod
	err := waitForEvery(ctx, 50*time.Millisecond, 5*time.Minute, func() (bool, error) {
		var ok bool
		if pod, ok = jobPod(ctx, b, job); !ok {
			return false, nil
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.State.Running != nil || cs.State.Terminated != nil {
				took = time.Since(start)
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return 0, fmt.Errorf("Job %s/%s: container never ran: %w; pod %+v", s.namespace, s.name, err, pod)
	}
	if err := c.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
		return 0, err
	}
	return took, waitForEvery(ctx, 200*time.Millisecond, 2*time.Minute, func() (bool, error) {
		err := c.Get(ctx, keyOf(pod), &corev1.Pod{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
