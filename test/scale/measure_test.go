package scale_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/kube"
)

// rate is how many timed requests per second each measurement sends (one at a time), as the
// admission benchmark does: the figures are latencies of a machine that is not saturated.
const rate = 200

const manifestTypes = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

func paced(n int, fn func(i int)) {
	t := time.NewTicker(time.Second / rate)
	defer t.Stop()
	for i := 0; i < n; i++ {
		<-t.C
		fn(i)
	}
}

func httpsClient(pems ...[]byte) *http.Client {
	pool := x509.NewCertPool()
	for _, p := range pems {
		pool.AppendCertsFromPEM(p)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 4},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// timed sends one request and reads the answer (at most 4 KiB of body).
func timed(b *testing.B, c *http.Client, method, url, auth string, body []byte) (time.Duration, int, string) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	must(b, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Accept", manifestTypes)
	}
	start := time.Now()
	resp, err := c.Do(req)
	must(b, err, method, url)
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return time.Since(start), resp.StatusCode, string(text)
}

// nodePullDenied times node pulls the central proxy refuses: a node pull listener's pod-bound
// token (TokenReview names its node; cached after the first request) asks for a repository no
// pod on its node names, through a connector a pod on that node uses. The whole decision runs
// (marked pods on the node from the index, then one live read if the token bucket allows) and
// nothing goes upstream. Interleaved with GET /v2/ without a credential (401, no decision): the
// cost of TLS and HTTP on loopback.
func (w *world) nodePullDenied(b *testing.B, c *http.Client, proxy string, n int) (denied, baseline []time.Duration) {
	path := func(i int) string {
		f := w.forward[i%len(w.forward)]
		rec := w.pods[f.pods[(i/len(w.forward))%len(f.pods)]]
		return fmt.Sprintf("https://%s/v2/%s/team/absent-%d/manifests/v1", proxy, policies.ProxyPath(w.connRef(rec.conn)), i%repos)
	}
	check := func(i int) time.Duration {
		f := w.forward[i%len(w.forward)]
		d, code, body := timed(b, c, http.MethodGet, path(i), "Bearer "+f.token, nil)
		if code != http.StatusForbidden || !strings.Contains(body, "DENIED") {
			b.Fatalf("node pull of an image no pod on %s names: HTTP %d %s", f.node, code, body)
		}
		return d
	}
	for i := range w.forward { // one TokenReview per listener token, cached from then on
		check(i)
	}
	time.Sleep(2 * time.Second) // the live-read token bucket refills (5/s, burst 10)
	paced(n, func(i int) {
		denied = append(denied, check(i))
		d, code, _ := timed(b, c, http.MethodGet, "https://"+proxy+"/v2/", "", nil)
		if code != http.StatusUnauthorized {
			b.Fatalf("GET /v2/ without a credential: HTTP %d", code)
		}
		baseline = append(baseline, d)
	})
	return denied, baseline
}

// nodePullAllowed times manifest HEADs a node pull listener relays for a pod on its node that
// names the image (allowed, then relayed to Harbor with the connector's cached token),
// interleaved with the same HEAD sent directly to Harbor with a token of its own.
func (w *world) nodePullAllowed(b *testing.B, c *http.Client, proxy string, n int) (through, direct []time.Duration) {
	type tuple struct {
		token, url, directURL string
		repo                  int
	}
	var tuples []tuple
	for _, f := range w.forward {
		for j := 0; j < len(f.pods) && j < 4; j++ {
			rec := w.pods[f.pods[j]]
			tuples = append(tuples, tuple{token: f.token, repo: rec.repo,
				url:       fmt.Sprintf("https://%s/v2/%s/team/app-%d/manifests/v1", proxy, policies.ProxyPath(w.connRef(rec.conn)), rec.repo),
				directURL: fmt.Sprintf("https://%s/v2/team/app-%d/manifests/v1", w.harbor.Host(), rec.repo)})
		}
	}
	harborTokens := map[int]string{}
	for r := 0; r < repos; r++ {
		harborTokens[r] = w.harborToken(b, fmt.Sprintf("repository:team/app-%d:pull", r))
	}
	dc := httpsClient(w.harbor.CACertPEM())
	head := func(t tuple) (time.Duration, time.Duration) {
		d1, code, body := timed(b, c, http.MethodHead, t.url, "Bearer "+t.token, nil)
		if code != http.StatusOK {
			b.Fatalf("allowed node pull HEAD %s: HTTP %d %s", t.url, code, body)
		}
		d2, code, _ := timed(b, dc, http.MethodHead, t.directURL, "Bearer "+harborTokens[t.repo], nil)
		if code != http.StatusOK {
			b.Fatalf("direct HEAD %s: HTTP %d", t.directURL, code)
		}
		return d1, d2
	}
	for _, t := range tuples { // connectors' credentials read and Harbor tokens fetched once
		head(t)
	}
	paced(n, func(i int) {
		d1, d2 := head(tuples[i%len(tuples)])
		through, direct = append(through, d1), append(direct, d2)
	})
	return through, direct
}

func (w *world) harborToken(b *testing.B, scope string) string {
	token, err := w.harbor.FetchToken(w.robotUser, w.robotPass, scope)
	must(b, err)
	return token
}

// forwardIdentify times CONNECTs to the forward listener, each on a new connection from the
// address of a random marked pod (127.x.y.z, bound as the source address) to 10.0.0.1:443,
// which the public tunnel policy refuses: the pod is identified by its address (the proxy's
// index of marked pods), its connectors are checked for that host, then the tunnel is refused (403).
// Interleaved with a non-proxy request on a new connection (400 before any identification).
func (w *world) forwardIdentify(b *testing.B, forward string, n int) (identify, baseline []time.Duration) {
	r := rand.New(rand.NewPCG(3, 5))
	send := func(ip, request string) (time.Duration, int, string) {
		start := time.Now()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", forward)
		must(b, err)
		defer conn.Close()
		_, err = io.WriteString(conn, request)
		must(b, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		must(b, err)
		body, _ := io.ReadAll(resp.Body)
		return time.Since(start), resp.StatusCode, string(body)
	}
	connect := func() time.Duration {
		w.mu.Lock()
		rec := w.pods[r.IntN(len(w.pods))]
		w.mu.Unlock()
		d, code, body := send(rec.ip, "CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n")
		if code != http.StatusForbidden || !strings.Contains(body, "tunnel to 10.0.0.1:443 refused") {
			b.Fatalf("CONNECT from pod %s/%s (%s): HTTP %d %s", rec.ns, rec.name, rec.ip, code, body)
		}
		return d
	}
	for i := 0; i < 20; i++ {
		connect()
	}
	paced(n, func(i int) {
		identify = append(identify, connect())
		d, code, _ := send(w.pods[i%len(w.pods)].ip, "GET / HTTP/1.1\r\nHost: proxy\r\n\r\n")
		if code != http.StatusBadRequest {
			b.Fatalf("GET / on the forward listener: HTTP %d", code)
		}
		baseline = append(baseline, d)
	})
	return identify, baseline
}

// admission times AdmissionReviews of Pods naming a random one of the C connectors (by name,
// from its own namespace, which is opted in by label) POSTed to the manager's webhook over
// HTTPS, as the API server sends them; every answer must mutate. It returns the first review's
// time separately: it starts the webhook's Namespace informer.
func (w *world) admission(b *testing.B, webhook string, n int) (first time.Duration, lat []time.Duration) {
	c := httpsClient(w.webhookCA.CertPEM)
	r := rand.New(rand.NewPCG(7, 11))
	body := func() []byte {
		ref := w.connRef(r.IntN(w.p.connectors))
		pod := corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, GenerateName: "app-", Labels: map[string]string{"app": "web"},
				Annotations: map[string]string{policies.AnnotationConnector: ref.Name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", Image: fmt.Sprintf("%s/team/app-%d:v1", w.harbor.Host(), r.IntN(repos))},
				{Name: "sidecar", Image: "quay.io/other/sidecar:v2"},
			}},
		}
		raw, err := json.Marshal(pod)
		must(b, err)
		review := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: "scale", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace: ref.Namespace, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
			},
		}
		out, err := json.Marshal(review)
		must(b, err)
		return out
	}
	post := func() time.Duration {
		d, code, text := timed(b, c, http.MethodPost, "https://"+webhook+"/mutate-pods", "", body())
		var review admissionv1.AdmissionReview
		if code != http.StatusOK || json.Unmarshal([]byte(text), &review) != nil || review.Response == nil ||
			!review.Response.Allowed || len(review.Response.Patch) == 0 {
			b.Fatalf("admission review: HTTP %d %s", code, text)
		}
		return d
	}
	first = post()
	for i := 0; i < 50; i++ {
		post()
	}
	paced(n, func(int) { lat = append(lat, post()) })
	return first, lat
}

// reconciles changes random Connectors' spec.address between two spellings of the same origin
// (with and without the trailing slash; the generation moves) one at a time and times each from
// the update to the status carrying the new observedGeneration, as seen by a watch. It returns
// those times and the manager's controller_runtime_reconcile_time_seconds buckets for the
// connector controller over the same span.
func (w *world) reconciles(b *testing.B, m *proc, n int) (e2e []time.Duration, before, after []metric) {
	ctx := context.Background()
	wc, err := client.NewWithWatch(w.cfg, client.Options{Scheme: kube.Scheme()})
	must(b, err)
	r := rand.New(rand.NewPCG(13, 17))
	before = m.scrape(b)
	for i := 0; i < n; i++ {
		ref := w.connRef(r.IntN(w.p.connectors))
		var c v1alpha1.Connector
		must(b, w.k8s.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &c))
		if strings.HasSuffix(c.Spec.Address, "/") {
			c.Spec.Address = strings.TrimSuffix(c.Spec.Address, "/")
		} else {
			c.Spec.Address += "/"
		}
		rv := c.ResourceVersion
		start := time.Now()
		must(b, w.k8s.Update(ctx, &c))
		w.waitObserved(b, wc, ref, rv, c.Generation)
		e2e = append(e2e, time.Since(start))
	}
	return e2e, before, m.scrape(b)
}

// waitObserved watches the Connector from resourceVersion rv until its status carries
// observedGeneration gen; a watch the API server ends is started again from the last version
// seen (from the current state after an error event).
func (w *world) waitObserved(b *testing.B, wc client.WithWatch, ref policies.ConnectorRef, rv string, gen int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		watcher, err := wc.Watch(ctx, &v1alpha1.ConnectorList{}, client.InNamespace(ref.Namespace),
			client.MatchingFields{"metadata.name": ref.Name}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		must(b, err)
		for ev := range watcher.ResultChan() {
			got, ok := ev.Object.(*v1alpha1.Connector)
			if !ok { // an error event (410 Gone): start again from the current state
				rv = ""
				break
			}
			rv = got.ResourceVersion
			if got.Status.ObservedGeneration >= gen {
				watcher.Stop()
				return
			}
		}
		watcher.Stop()
	}
	b.Fatalf("Connector %s: no status for generation %d in 60 s", ref, gen)
}

// histogramQuantile is the q-quantile of a histogram's observations between two scrapes (those
// of the series whose labels match), interpolated linearly inside the bucket (as Prometheus's
// histogram_quantile does), and their count.
func histogramQuantile(before, after []metric, name string, match map[string]string, q float64) (time.Duration, int) {
	type bucket struct{ le, count float64 }
	counts := map[float64]float64{}
	for sign, ms := range map[float64][]metric{-1: before, 1: after} {
		for _, m := range ms {
			if m.name != name+"_bucket" || !matches(m, match) {
				continue
			}
			le, err := strconv.ParseFloat(m.labels["le"], 64)
			if err != nil {
				continue
			}
			counts[le] += sign * m.value
		}
	}
	var buckets []bucket
	for le, c := range counts {
		buckets = append(buckets, bucket{le, c})
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].le < buckets[j].le })
	if len(buckets) == 0 {
		return 0, 0
	}
	total := buckets[len(buckets)-1].count
	if total == 0 {
		return 0, 0
	}
	target, prevLe, prevCount := q*total, 0.0, 0.0
	for _, bk := range buckets {
		if bk.count >= target {
			if math.IsInf(bk.le, 1) {
				return time.Duration(prevLe * float64(time.Second)), int(total)
			}
			frac := 0.0
			if bk.count > prevCount {
				frac = (target - prevCount) / (bk.count - prevCount)
			}
			return time.Duration((prevLe + (bk.le-prevLe)*frac) * float64(time.Second)), int(total)
		}
		prevLe, prevCount = bk.le, bk.count
	}
	return 0, int(total)
}
