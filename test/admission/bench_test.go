package admission_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/latency"
)

// Paths the suite registers for the benchmark: the real Pod handler and a handler that admits
// without looking, both behind the same HTTPS server and admission decoding, each timed on the
// server side.
const (
	benchPodsPath = "/bench/pods"
	benchNoopPath = "/bench/noop"
)

// serverTimings records how long the webhook server spent on each request, by path.
var serverTimings = struct {
	sync.Mutex
	byPath map[string][]time.Duration
}{byPath: map[string][]time.Duration{}}

func timed(path string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		d := time.Since(start)
		serverTimings.Lock()
		serverTimings.byPath[path] = append(serverTimings.byPath[path], d)
		serverTimings.Unlock()
	})
}

type noopHandler struct{}

func (noopHandler) Handle(context.Context, admission.Request) admission.Response {
	return admission.Allowed("")
}

// BenchmarkAdmissionLatency sends AdmissionReviews at a fixed rate over HTTPS to the Pod
// webhook and to a no-op handler, interleaved so both see the same machine load, and reports
// server-side and client-side p50/p99. Run with: make bench.
func BenchmarkAdmissionLatency(b *testing.B) {
	const rate, perPath = 200, 2000 // requests per second (both paths together), requests per path
	ns := benchNamespace(b)
	body := reviewBody(b, ns)
	client := benchClient(b)
	addr := "https://" + net.JoinHostPort(env.WebhookInstallOptions.LocalServingHost, strconv.Itoa(env.WebhookInstallOptions.LocalServingPort))

	serverTimings.Lock()
	serverTimings.byPath = map[string][]time.Duration{}
	serverTimings.Unlock()
	clientTimes := map[string][]time.Duration{}
	ticker := time.NewTicker(time.Second / rate)
	defer ticker.Stop()
	b.ResetTimer()
	for i := 0; i < 2*perPath; i++ {
		<-ticker.C
		path := benchPodsPath
		if i%2 == 1 {
			path = benchNoopPath
		}
		start := time.Now()
		resp, err := client.Post(addr+path, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		clientTimes[path] = append(clientTimes[path], time.Since(start))
		if path == benchPodsPath && (review.Response == nil || !review.Response.Allowed || len(review.Response.Patch) == 0) {
			b.Fatalf("the Pod webhook did not mutate the benchmark pod: %+v", review.Response)
		}
	}
	b.StopTimer()

	serverTimings.Lock()
	defer serverTimings.Unlock()
	fmt.Fprintf(os.Stdout, "\nadmission latency over HTTPS at %d req/s, %d requests per handler, interleaved:\n", rate, perPath)
	fmt.Fprintf(os.Stdout, "  %-22s %12s %12s %12s %12s\n", "handler", "server p50", "server p99", "client p50", "client p99")
	for _, p := range []struct{ name, path string }{{"no-op (baseline)", benchNoopPath}, {"Pod mutation", benchPodsPath}} {
		s50, s99 := latency.Percentiles(serverTimings.byPath[p.path])
		c50, c99 := latency.Percentiles(clientTimes[p.path])
		fmt.Fprintf(os.Stdout, "  %-22s %12s %12s %12s %12s\n", p.name, latency.Millis(s50)+"ms", latency.Millis(s99)+"ms", latency.Millis(c50)+"ms", latency.Millis(c99)+"ms")
		if p.path == benchPodsPath {
			b.ReportMetric(float64(s50.Microseconds())/1000, "server-p50-ms")
			b.ReportMetric(float64(s99.Microseconds())/1000, "server-p99-ms")
		}
	}
	p50, p99 := latency.Percentiles(serverTimings.byPath[benchPodsPath])
	n50, n99 := latency.Percentiles(serverTimings.byPath[benchNoopPath])
	fmt.Fprintf(os.Stdout, "  added by the mutation (server): p50 %s, p99 %s (goal: p99 <= 5ms)\n", latency.Millis(p50-n50)+"ms", latency.Millis(p99-n99)+"ms")
}

func benchNamespace(b *testing.B) string {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-", Labels: map[string]string{policies.LabelProxyInject: "true"}}}
	if err := k8s.Create(ctx, ns); err != nil {
		b.Fatal(err)
	}
	if err := k8s.Create(ctx, connectorObject(ns.Name, "harbor", "https://harbor.example.com")); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the informer see it, so the benchmark measures the cached path
	return ns.Name
}

func reviewBody(b *testing.B, ns string) []byte {
	p := pod(ns, "bench", nil, annotated, harborImage)
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "harbor.example.com/team/init:v1"}}
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "quay.io/other/sidecar:v2"})
	raw, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func benchClient(b *testing.B) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(env.WebhookInstallOptions.LocalServingCAData) {
		b.Fatal("no webhook CA")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 4}}
}
