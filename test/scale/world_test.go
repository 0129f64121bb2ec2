package scale_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/test/testca"
)

// params are the sizes of the world, from the environment (make bench-scale passes them).
type params struct {
	nodes, pods, namespaces, connectors int
	// samples is the number of timed requests per decision; reconciles the number of timed
	// Connector spec changes.
	samples, reconciles int
	// rest is the window in which API requests are counted with the products at rest.
	rest time.Duration
}

func paramsFromEnv(b *testing.B) params {
	p := params{nodes: 1000, pods: 30000, namespaces: 2000, connectors: 2000, samples: 2000, reconciles: 200, rest: 30 * time.Second}
	for env, v := range map[string]*int{"SCALE_NODES": &p.nodes, "SCALE_PODS": &p.pods, "SCALE_NAMESPACES": &p.namespaces,
		"SCALE_CONNECTORS": &p.connectors, "SCALE_SAMPLES": &p.samples, "SCALE_RECONCILES": &p.reconciles} {
		if s := os.Getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				b.Fatalf("%s=%q: want a positive integer", env, s)
			}
			*v = n
		}
	}
	if s := os.Getenv("SCALE_REST"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("SCALE_REST=%q: %v", s, err)
		}
		p.rest = d
	}
	if p.pods < 2 {
		b.Fatal("SCALE_PODS must be at least 2 (the growth is measured at half and at all of them)")
	}
	return p
}

const (
	credentialsNS = access.DefaultCredentialsNamespace // the manager's copies of credentials
	productNS     = "connectors-system"                // the manager's leader-election Lease
	forwarderNS   = "connectors-node"                  // the node pull listeners' ServiceAccount
	forwarderSA   = "connectors-node"
	repos         = 20 // distinct repositories the pods' images name (team/app-<r>:v1)
	fillWorkers   = 32
)

// podRec is what the benchmark keeps of each marked pod it created.
type podRec struct {
	ns, name, node, ip  string
	nodeIdx, conn, repo int
}

// world is the API server, the test Harbor and the objects the products see.
type world struct {
	p        params
	dir      string
	env      *envtest.Environment
	cs       kubernetes.Interface // protobuf, no client-side rate limit
	k8s      client.Client        // JSON (Connectors)
	cfg      *rest.Config
	harbor   *testharbor.Server
	auditLog string

	robotUser, robotPass string
	proxyCA, webhookCA   *testca.CA

	mu      sync.Mutex
	pods    []podRec // current marked pods, by index
	nextIP  atomic.Uint32
	forward []forwarder // node pull listeners' pods on sampled nodes
}

func startWorld(b *testing.B, p params) *world {
	w := &world{p: p, dir: b.TempDir()}
	w.auditLog = filepath.Join(w.dir, "audit.log")
	policy := filepath.Join(w.dir, "audit-policy.yaml")
	must(b, os.WriteFile(policy, []byte(auditPolicy), 0o644))
	var err error
	w.env, err = kube.Start(kube.WithAPIServerArgs(map[string][]string{
		"audit-policy-file": {policy},
		"audit-log-path":    {w.auditLog},
		"audit-log-mode":    {"blocking"},
	}))
	must(b, err)
	w.cfg = rest.CopyConfig(w.env.Config)
	w.cfg.QPS, w.cfg.Burst = -1, 0 // the fill is bounded by its workers, not a client-side limiter
	pb := rest.CopyConfig(w.cfg)
	pb.ContentType = "application/vnd.kubernetes.protobuf"
	pb.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	w.cs, err = kubernetes.NewForConfig(pb)
	must(b, err)
	w.k8s, err = client.New(w.cfg, client.Options{Scheme: kube.Scheme()})
	must(b, err)

	w.harbor, err = testharbor.Start(testharbor.Options{TLS: true})
	must(b, err)
	w.harbor.AddProject("team", false)
	w.robotUser, w.robotPass = w.harbor.AddRobot("team", "scale")
	w.proxyCA, err = testca.New("connectors-proxy scale CA")
	must(b, err)
	w.webhookCA, err = testca.New("connectors-webhook scale CA")
	must(b, err)
	return w
}

func (w *world) stop() {
	if w.harbor != nil {
		_ = w.harbor.Close()
	}
	if w.env != nil {
		_ = w.env.Stop()
	}
}

func nsName(k int) string   { return fmt.Sprintf("scale-%05d", k) }
func nodeName(n int) string { return fmt.Sprintf("node-%05d", n) }

// connector c lives in namespace c mod K; with more connectors than namespaces a namespace holds
// several.
func (w *world) connRef(c int) policies.ConnectorRef {
	return policies.ConnectorRef{Namespace: nsName(c % w.p.namespaces), Name: "harbor-" + strconv.Itoa(c/w.p.namespaces)}
}

// connectorFor picks the connector a pod in namespace k uses: one of the namespace's own, or,
// when there are fewer connectors than namespaces, the connector of its project's namespace
// (visible through the cpaas.io/project and cpaas.io/inner-namespace labels).
func (w *world) connectorFor(k int, r *rand.Rand) int {
	K, C := w.p.namespaces, w.p.connectors
	if k < C {
		count := (C - k + K - 1) / K
		return k + K*r.IntN(count)
	}
	return k % C
}

// fillBase creates the namespaces (opted in, with project labels), the Connectors with their
// Secrets, the Nodes, the product namespace and the node pull listeners' ServiceAccount, and
// pushes the images the pods name into the test Harbor.
func (w *world) fillBase(b *testing.B) {
	ctx := context.Background()
	for _, ns := range []string{credentialsNS, productNS, forwarderNS} {
		_, err := w.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) { // the credentials namespace may be the product's
			must(b, err)
		}
	}
	_, err := w.cs.CoreV1().ServiceAccounts(forwarderNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: forwarderSA}}, metav1.CreateOptions{})
	must(b, err)
	K, C := w.p.namespaces, w.p.connectors
	must(b, parallel(K, func(k int) error {
		labels := map[string]string{policies.LabelProxyInject: "true", policies.LabelProject: "g" + strconv.Itoa(k%C)}
		if k < C {
			labels[policies.LabelInnerNamespace] = "g" + strconv.Itoa(k)
		}
		_, err := w.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(k), Labels: labels}}, metav1.CreateOptions{})
		return err
	}))
	ca := w.harbor.CACertPEM()
	must(b, parallel(C, func(c int) error {
		ref := w.connRef(c)
		secrets := []*corev1.Secret{
			{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name + "-robot"}, Type: corev1.SecretTypeBasicAuth,
				StringData: map[string]string{"username": w.robotUser, "password": w.robotPass}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name + "-ca"}, Data: map[string][]byte{"ca.crt": ca}},
		}
		for _, s := range secrets {
			if _, err := w.cs.CoreV1().Secrets(ref.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		return w.k8s.Create(ctx, &v1alpha1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name}, Spec: v1alpha1.ConnectorSpec{
			ConnectorClassName: v1alpha1.ClassHarbor, Address: w.harbor.URL(),
			Auth:            &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: ref.Name + "-robot"}},
			CACertSecretRef: &v1alpha1.LocalSecretReference{Name: ref.Name + "-ca"},
		}})
	}))
	must(b, parallel(w.p.nodes, func(n int) error {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(n), Labels: map[string]string{"kubernetes.io/hostname": nodeName(n), "kubernetes.io/os": "linux"}}}
		_, err := w.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		return err
	}))
	w.pushImages(b)
}

func (w *world) pushImages(b *testing.B) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.harbor.CACertPEM())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	for r := 0; r < repos; r++ {
		img, err := random.Image(512, 1)
		must(b, err)
		ref, err := name.ParseReference(fmt.Sprintf("%s/team/app-%d:v1", w.harbor.Host(), r))
		must(b, err)
		must(b, remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: w.robotUser, Password: w.robotPass}), remote.WithTransport(tr)))
	}
}

// injection is the manager's configuration the pods are mutated with (as config/manager sets it).
var injection = policies.InjectionConfig{
	ForwardProxyURL: "http://connectors-proxy.connectors-system.svc:3128",
	PullHost:        policies.DefaultPullHost,
	NoProxy:         []string{"10.96.0.0/12", "10.96.0.1"},
}

// fillPods creates marked pods [from, to) and gives each the status a kubelet reports.
func (w *world) fillPods(b *testing.B, from, to int) {
	w.mu.Lock()
	for len(w.pods) < to {
		w.pods = append(w.pods, podRec{})
	}
	w.mu.Unlock()
	must(b, parallel(to-from, func(i int) error {
		p := from + i
		r := rand.New(rand.NewPCG(17, uint64(p)))
		k := r.IntN(w.p.namespaces)
		n := r.IntN(w.p.nodes)
		rec := podRec{ns: nsName(k), name: fmt.Sprintf("app-%06d", p), node: nodeName(n), nodeIdx: n,
			conn: w.connectorFor(k, r), repo: r.IntN(repos)}
		if err := w.createPod(&rec); err != nil {
			return err
		}
		w.mu.Lock()
		w.pods[p] = rec
		w.mu.Unlock()
		return nil
	}))
}

// createPod creates one pod as the webhook leaves it and the kubelet reports it: Running, with
// a fresh address in 127.0.0.0/8 (so the benchmark can send from it).
func (w *world) createPod(rec *podRec) error {
	ctx := context.Background()
	n := w.nextIP.Add(1)
	ip := net.IPv4(127, byte(10+n>>16), byte(n>>8), byte(n)).String()
	rec.ip = ip
	pod, err := w.mutatedPod(rec)
	if err != nil {
		return err
	}
	created, err := w.cs.CoreV1().Pods(rec.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	created.Status = runningStatus(created, ip, fmt.Sprintf("10.1.%d.%d", rec.nodeIdx/256, rec.nodeIdx%256))
	_, err = w.cs.CoreV1().Pods(rec.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// mutatedPod is a Deployment's pod naming its connector, mutated by policies.Inject with the
// manager's configuration: exactly the label, annotations, volume, mounts, env and rewritten
// image the webhook writes.
func (w *world) mutatedPod(rec *podRec) (*corev1.Pod, error) {
	ref := w.connRef(rec.conn)
	annotation := ref.Name
	if ref.Namespace != rec.ns {
		annotation = ref.String()
	}
	app := "app-" + strconv.Itoa(rec.repo)
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: rec.ns, Name: rec.name,
			Labels:      map[string]string{"app": app, "pod-template-hash": "7c9d8f6b5"},
			Annotations: map[string]string{policies.AnnotationConnector: annotation},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-7c9d8f6b5",
				UID: types.UID(fmt.Sprintf("5b0c1a2e-0000-4000-8000-%012d", rec.repo)), Controller: &yes, BlockOwnerDeletion: &yes}},
		},
		Spec: corev1.PodSpec{
			NodeName:           rec.node,
			ServiceAccountName: "default",
			Containers: []corev1.Container{{
				Name: "app", Image: fmt.Sprintf("%s/team/%s:v1", w.harbor.Host(), app),
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}},
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			}},
			// What the ServiceAccount admission plugin adds on a cluster (envtest runs without it).
			Volumes: []corev1.Volume{{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr(int64(3607))}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
			}}}}},
		},
	}
	_, err := policies.Inject(injection, policies.Workload{Namespace: rec.ns, Meta: &pod.ObjectMeta, Spec: &pod.Spec},
		[]policies.ResolvedConnector{{Ref: ref, Address: w.harbor.URL()}}, policies.AllParts)
	if err != nil {
		return nil, err
	}
	if pod.Labels[policies.LabelProxyInjected] != "true" {
		return nil, fmt.Errorf("policies.Inject did not mark pod %s/%s", rec.ns, rec.name)
	}
	return pod, nil
}

func runningStatus(pod *corev1.Pod, ip, hostIP string) corev1.PodStatus {
	now := metav1.Now()
	started := true
	var conditions []corev1.PodCondition
	for _, t := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		conditions = append(conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	digest := fmt.Sprintf("%x", sha256.Sum256([]byte(pod.Namespace+"/"+pod.Name)))
	return corev1.PodStatus{
		Phase: corev1.PodRunning, Conditions: conditions, QOSClass: pod.Status.QOSClass,
		HostIP: hostIP, HostIPs: []corev1.HostIP{{IP: hostIP}}, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, StartTime: &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Ready: true, Started: &started, Image: pod.Spec.Containers[0].Image,
			ImageID:     pod.Spec.Containers[0].Image[:len(pod.Spec.Containers[0].Image)-len(":v1")] + "@sha256:" + digest,
			ContainerID: "containerd://" + digest,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
}

// churn deletes every tenth current pod and creates a replacement (new name, new address, same
// namespace, node, connector and image), as a rollout of a tenth of the workloads would.
func (w *world) churn(b *testing.B, round int) int {
	ctx := context.Background()
	w.mu.Lock()
	var idx []int
	for i := 0; i < len(w.pods); i += 10 {
		idx = append(idx, i)
	}
	w.mu.Unlock()
	zero := int64(0)
	must(b, parallel(len(idx), func(j int) error {
		i := idx[j]
		w.mu.Lock()
		rec := w.pods[i]
		w.mu.Unlock()
		// Grace period 0: no kubelet confirms the deletion on this test bed.
		if err := w.cs.CoreV1().Pods(rec.ns).Delete(ctx, rec.name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			return err
		}
		rec.name = fmt.Sprintf("app-%06d-r%d", i, round)
		if err := w.createPod(&rec); err != nil {
			return err
		}
		w.mu.Lock()
		w.pods[i] = rec
		w.mu.Unlock()
		return nil
	}))
	return len(idx)
}

// forwarder is a node pull listener's pod on a node and its pod-bound token, whose TokenReview
// names the node.
type forwarder struct {
	node  string
	token string
	pods  []int // indexes of marked pods on the node
}

// startForwarders creates node pull listener pods on up to count nodes that have marked pods, and
// a pod-bound token (audience connectors-proxy) for each, as the kubelet projects it.
func (w *world) startForwarders(b *testing.B, count int) {
	ctx := context.Background()
	byNode := map[string][]int{}
	w.mu.Lock()
	for i, rec := range w.pods {
		byNode[rec.node] = append(byNode[rec.node], i)
	}
	w.mu.Unlock()
	var nodes []string
	for n := 0; n < w.p.nodes && len(nodes) < count; n += max(1, w.p.nodes/count) {
		if len(byNode[nodeName(n)]) > 0 {
			nodes = append(nodes, nodeName(n))
		}
	}
	w.forward = make([]forwarder, len(nodes))
	must(b, parallel(len(nodes), func(i int) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: forwarderNS, Name: "connectors-node-" + nodes[i]},
			Spec: corev1.PodSpec{ServiceAccountName: forwarderSA, NodeName: nodes[i], HostNetwork: true,
				Containers: []corev1.Container{{Name: "node-pull", Image: "connectors-proxy:scale"}}},
		}
		created, err := w.cs.CoreV1().Pods(forwarderNS).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		expiry := int64(3600)
		tr, err := w.cs.CoreV1().ServiceAccounts(forwarderNS).CreateToken(ctx, forwarderSA, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{policies.DefaultAudience}, ExpirationSeconds: &expiry,
				BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: created.Name, UID: created.UID}},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		w.forward[i] = forwarder{node: nodes[i], token: tr.Status.Token, pods: byNode[nodes[i]]}
		return nil
	}))
}

// parallel runs fn(0..n-1) on fillWorkers goroutines and returns the first error.
func parallel(n int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for g := 0; g < min(fillWorkers, n); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func ptr[T any](v T) *T { return &v }

func must(b testing.TB, err error, context ...string) {
	b.Helper()
	if err != nil {
		b.Fatal(err, fmt.Sprint(context))
	}
}
