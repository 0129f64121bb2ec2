//go:build e2e && day2

package e2e_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/test/node"
)

// The day-2 suite (make e2e-day2): what a platform team lives with after the install, on the
// cluster test bed. It installs an earlier build, upgrades it to this checkout, then takes
// parts away and rotates credentials while Jobs pull and push through every path, and asserts
// what the workload owner sees: Job status, client output, digests, object state.

// upgradeFrom is the build the suite installs first; move it to the last release tag once there
// is one. It is the first commit of the day-2 work, the first with the manager's and the proxy's
// preStop pause: a replica's termination follows its own (old) pod spec, so from a build without
// it (73e029c, the commit before) an admission during the manager's rollout can meet a replica
// that already stopped serving (the suite saw one EOF in 12 Jobs; README "Upgrade"). It differs
// from this checkout in what an upgrade must carry: the CSI driver's plugin directory mount, the
// CA mount the webhook writes (a directory now), the CRD's annotation, new RBAC and metrics.
const upgradeFrom = "3ff992658c70837ee207932cec15d32129062147"

func init() { installFrom = upgradeFrom }

// TestDay2 runs the scenarios in order on one cluster; each leaves the product healthy for the
// next (or fails saying what it left).
func TestDay2(t *testing.T) {
	for _, step := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"upgrade with kustomize while workloads run", upgradeWithKustomize},
		{"node listener restart: kubelet pull retries cover the gap", nodeListenerRestart},
		{"proxy pod loss", proxyPodLoss},
		{"manager down", managerDown},
		{"Harbor down and back", harborDownAndBack},
		{"rotation: certificates, CAs and the robot Secret", rotation},
		{"who may do what: the built-in roles aggregate the install's", accessThroughBuiltInRoles},
		{"GitOps: Argo CD and Flux see the mutated workloads in sync", gitopsInSync},
		{"uninstall: refused while annotated pods run, then nothing left", uninstall},
		{"upgrade with Helm over a kustomize install of the earlier build", helmUpgrade},
	} {
		t.Run(step.name, step.run)
	}
}

// traffic is a set of Jobs that pull and push through every path of the product at once, the
// pushing ones looping for a while so that a disruption lands while they run.
type traffic struct {
	jobs   []*batchv1.Job
	digest map[string]string // node-path Job -> the digest its pod must run
	pushed map[string]string // pushing Job -> the reference whose digest Harbor must hold
}

// startTraffic starts one Job per path: a node-path pull of an image no pod pulled before, and
// crane pushing and pulling back `rounds` times through the forward proxy and the reverse
// address. Jobs retry a failed pod twice, as Jobs usually do.
func startTraffic(t *testing.T, run string, rounds int) *traffic {
	t.Helper()
	tr := &traffic{digest: map[string]string{}, pushed: map[string]string{}}
	retry := func(j *batchv1.Job) { j.Spec.BackoffLimit = ptr(int32(2)) }
	image, digest := uniqueImage(t, run)
	node := createJob(t, jobSpec{namespace: nsA, name: run + "-node", image: image, connector: connectorName,
		pullPolicy: corev1.PullAlways, deadline: 10 * time.Minute, mutate: retry, script: `echo "ran $DAY2_RUN"`})
	tr.jobs, tr.digest[node.Name] = append(tr.jobs, node), digest
	for _, path := range []struct{ suffix, ref string }{
		{"forward", w.harborHost + "/" + project + "/day2-" + run + "-forward:v1"},
		{"reverse", reverseRef("day2-" + run + "-reverse:v1")},
	} {
		job := createJob(t, jobSpec{namespace: nsA, name: run + "-" + path.suffix, image: w.craneImage(), connector: connectorName,
			deadline: 10 * time.Minute, mutate: retry, script: fmt.Sprintf(`i=0
while [ $i -lt %[1]d ]; do
  i=$((i+1)); echo "%[2]s round $i" > f; tar -cf layer.tar f
  crane append --oci-empty-base -f layer.tar -t %[3]s
  got=$(crane export %[3]s - | tar -xO f)
  [ "$got" = "%[2]s round $i" ] || { echo "round $i pulled back '$got'"; exit 1; }
done
echo "digest=$(crane digest %[3]s)"`, rounds, run+"-"+path.suffix, path.ref)})
		tr.jobs = append(tr.jobs, job)
		tr.pushed[job.Name] = strings.Replace(path.ref, reverseRef(""), w.harborHost+"/"+project+"/", 1)
	}
	return tr
}

// running waits until every Job's pod runs (so a disruption lands mid-transfer).
func (tr *traffic) running(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, waitFor(ctx, 3*time.Minute, func() (bool, error) {
		for _, job := range tr.jobs {
			pod, ok := jobPod(ctx, t, job)
			if !ok || (pod.Status.Phase != corev1.PodRunning && pod.Status.Phase != corev1.PodSucceeded) {
				return false, nil
			}
		}
		return true, nil
	}, func() string { return "traffic Jobs not running: " + podSummary(ctx, w.node.Client, nsA) }))
}

var digestLine = regexp.MustCompile(`digest=(sha256:[0-9a-f]{64})`)

// wait asserts every Job completed, node-path pods ran the pushed digest, and what the pushing
// Jobs reported is what Harbor holds. It returns the pods that failed and were retried.
func (tr *traffic) wait(t *testing.T) (retried int32) {
	t.Helper()
	for _, job := range tr.jobs {
		res := awaitJob(t, job, 11*time.Minute, false)
		require.True(t, res.succeeded, "Job %s: events:\n%s\nlogs:\n%s", job.Name, res.events, res.logs)
		retried += job.Status.Failed
		if want, ok := tr.digest[job.Name]; ok {
			require.NotEmpty(t, res.pod.Status.ContainerStatuses)
			assert.Contains(t, res.pod.Status.ContainerStatuses[0].ImageID, want, "the node-path pod runs the pushed image")
		}
		if ref, ok := tr.pushed[job.Name]; ok {
			m := digestLine.FindStringSubmatch(res.logs)
			require.NotNil(t, m, "Job %s printed no digest: %s", job.Name, res.logs)
			assert.Equal(t, harborDigest(t, ref), m[1], "Harbor holds what %s pushed through the product", job.Name)
		}
	}
	if retried > 0 {
		t.Logf("%d pod(s) failed and were retried by their Job", retried)
	}
	return retried
}

// uniqueImage pushes the app image with its own config (DAY2_RUN=run) to Harbor, so the
// kubelet has never pulled it, and returns its name and digest.
func uniqueImage(t *testing.T, run string) (string, string) {
	t.Helper()
	img, err := node.BuildImage(node.BusyboxFiles(), []string{"/bin/sh"}, []string{"DAY2_RUN=" + run})
	require.NoError(t, err)
	ref := w.harborHost + "/" + project + "/day2-node:" + run
	require.NoError(t, w.pushToHarbor(context.Background(), img, ref))
	digest, err := img.Digest()
	require.NoError(t, err)
	return ref, digest.String()
}

// harborDigest asks Harbor itself, with the robot's credentials, for the digest of ref.
func harborDigest(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	require.NoError(t, err)
	desc, err := remote.Head(r, remote.WithAuth(&authn.Basic{Username: w.robot, Password: w.secret}), remote.WithTransport(w.harborTransport()))
	require.NoError(t, err, "HEAD %s on Harbor", ref)
	return desc.Digest.String()
}

// admitDuring creates a small annotated Job every two seconds until stop is closed, and returns
// the Jobs admitted and every admission error: during an upgrade there must be none.
func admitDuring(t *testing.T, run string, stop <-chan struct{}) func() ([]*batchv1.Job, []error) {
	var (
		mu   sync.Mutex
		jobs []*batchv1.Job
		errs []error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			job := jobSpec{namespace: nsA, name: fmt.Sprintf("%s-admit-%d", run, i), image: w.appImage(), connector: connectorName,
				script: "true", mutate: func(j *batchv1.Job) { j.Spec.BackoffLimit = ptr(int32(2)) }}.build()
			err := w.node.Client.Create(context.Background(), job)
			mu.Lock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s at %s: %w", job.Name, time.Now().Format(time.TimeOnly), err))
			} else {
				jobs = append(jobs, job)
			}
			mu.Unlock()
		}
	}()
	return func() ([]*batchv1.Job, []error) {
		<-done
		for _, job := range jobs {
			t.Cleanup(func() {
				_ = w.node.Client.Delete(context.Background(), job, client.PropagationPolicy(metav1.DeletePropagationBackground))
			})
		}
		return jobs, errs
	}
}

// productPodRestarts sums the container restarts of the product's running pods, by pod name.
func productPodRestarts(t *testing.T) map[string]int32 {
	t.Helper()
	out := map[string]int32{}
	for _, ns := range []string{productNS, nodeNS} {
		var pods corev1.PodList
		require.NoError(t, w.node.Client.List(context.Background(), &pods, client.InNamespace(ns)))
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue // a rollout's leftover, going away
			}
			for _, cs := range p.Status.ContainerStatuses {
				out[p.Namespace+"/"+p.Name] += cs.RestartCount
			}
		}
	}
	return out
}

const nodeNS = "connectors-node"

// credentialsNS is where this checkout's manager keeps its copies of the connectors' credentials
// (the earlier build kept them in productNS).
const credentialsNS = access.DefaultCredentialsNamespace
