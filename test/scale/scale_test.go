// Package scale_test measures the proxy and the manager against an API server filled like a
// large cluster: N Nodes, M pods the webhook marked (bound to nodes, Running, with addresses),
// K namespaces and C Connectors with their Secrets pointing at one test Harbor. Both binaries
// run as processes, as deployed. Run: make bench-scale (README "Performance", "Scale").
package scale_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/test/latency"
)

// settle is how long the processes are left alone before their resident set is read (a forced
// GC cannot be asked from outside the process).
const settle = 5 * time.Second

// forwarderNodes is how many nodes get a node pull listener whose token the node-pull
// measurements use.
const forwarderNodes = 50

// run is one start of both processes against the API server as it is filled at that moment.
type run struct {
	proxy, manager *proc
	addr           addresses
	// reconciled: from the manager's start until both its controllers had reconciled every
	// Connector once and their queues were empty.
	reconciled   time.Duration
	reconciledAt time.Time
	ready        int // Connectors Ready
	copies       int // credentials copies in the product namespace
	proxyMem     memory
	managerMem   memory
	// Go heap in use (go_memstats_heap_inuse_bytes) when the memory was read.
	proxyHeap, managerHeap float64
}

func (r *run) stop() {
	r.manager.stop()
	r.proxy.stop()
}

// runProducts starts the proxy, waits for its /readyz, then the manager (so the manager's first
// ProxyReady check finds the proxy ready), waits for its /readyz and for its first reconcile of
// every Connector, lets both settle and reads their memory.
func (w *world) runProducts(b *testing.B, bins binaries, f files, tag string) *run {
	r := &run{addr: addresses{proxyHTTPS: freeAddr(b), proxyForward: freeAddr(b), webhook: freeAddr(b)}}
	_, port, _ := net.SplitHostPort(r.addr.webhook)
	r.addr.webhookPort, _ = strconv.Atoi(port)
	r.proxy = w.startProxy(b, bins, f, r.addr, tag)
	r.proxy.waitReady(b, 15*time.Minute)
	r.manager = w.startManager(b, bins, f, r.addr, tag)
	r.manager.waitReady(b, 15*time.Minute)
	r.reconciled = w.waitReconciled(b, r.manager, 30*time.Minute)
	r.reconciledAt = time.Now()
	r.ready, r.copies = w.readyConnectors(b)
	time.Sleep(settle)
	r.proxyMem, r.managerMem = r.proxy.memory(b), r.manager.memory(b)
	r.proxyHeap, r.managerHeap = r.proxy.heap(b), r.manager.heap(b)
	return r
}

// BenchmarkScale: README "Performance", "Scale". Skipped unless SCALE=1 (make bench-scale), so
// make bench does not run it.
func BenchmarkScale(b *testing.B) {
	if os.Getenv("SCALE") != "1" {
		b.Skip("the scale benchmark fills an API server for minutes: run it with make bench-scale")
	}
	wall := time.Now()
	ctrllog.SetLogger(logr.Discard()) // envtest's and the clients' logs; the products log to files
	p := paramsFromEnv(b)
	w := startWorld(b, p)
	defer w.stop()
	bins := build(b, w.dir)
	f := w.writeFiles(b)

	t0 := time.Now()
	w.fillBase(b)
	fillBase := time.Since(t0)
	half := p.pods / 2
	t0 = time.Now()
	w.fillPods(b, 0, half)
	fillHalf := time.Since(t0)

	// First start at half the pods, for the growth per pod.
	r1 := w.runProducts(b, bins, f, "half")
	r1.stop()
	w.releaseLease(b)

	t0 = time.Now()
	w.fillPods(b, half, p.pods)
	fillRest := time.Since(t0)
	w.startForwarders(b, forwarderNodes)

	r := w.runProducts(b, bins, f, "full")
	defer r.stop()

	// At rest: nothing changes for p.rest; the audit log has every request either product made.
	restFrom := time.Now()
	time.Sleep(p.rest)
	restTo := time.Now()
	atRest, err := countRequests(w.auditLog, restFrom, restTo)
	must(b, err)
	startup, err := countRequests(w.auditLog, r.proxy.started, r.reconciledAt)
	must(b, err)

	// Churn a tenth of the pods (delete and recreate), then settle.
	t0 = time.Now()
	churned := w.churn(b, 1)
	churnTime := time.Since(t0)
	time.Sleep(settle)
	proxyChurn, managerChurn := r.proxy.memory(b), r.manager.memory(b)
	proxyChurnHeap, managerChurnHeap := r.proxy.heap(b), r.manager.heap(b)

	// Per-request decisions, client side over loopback.
	loadBefore := loadAverage()
	pc := httpsClient(w.proxyCA.CertPEM)
	// The proxy's own timing of each decision (connectors_proxy_decision_seconds), scraped
	// around each measurement.
	scrapes := []([]metric){r.proxy.scrape(b)}
	denied, deniedBase := w.nodePullDenied(b, pc, r.addr.proxyHTTPS, p.samples)
	scrapes = append(scrapes, r.proxy.scrape(b))
	allowed, direct := w.nodePullAllowed(b, pc, r.addr.proxyHTTPS, p.samples)
	scrapes = append(scrapes, r.proxy.scrape(b))
	identify, identifyBase := w.forwardIdentify(b, r.addr.proxyForward, p.samples)
	scrapes = append(scrapes, r.proxy.scrape(b))
	liveMade := map[string]string{"result": "made"}
	liveReads := sum(scrapes[1], "connectors_proxy_live_reads_total", liveMade) - sum(scrapes[0], "connectors_proxy_live_reads_total", liveMade)
	// decided is the p50 and p99 of one decision in the proxy between scrapes i and i+1.
	decided := func(i int, decision string) (p50, p99 time.Duration) {
		match := map[string]string{"decision": decision}
		p50, _ = histogramQuantile(scrapes[i], scrapes[i+1], "connectors_proxy_decision_seconds", match, 0.5)
		p99, _ = histogramQuantile(scrapes[i], scrapes[i+1], "connectors_proxy_decision_seconds", match, 0.99)
		return p50, p99
	}
	deniedIn50, deniedIn99 := decided(0, "node-pull")
	allowedIn50, allowedIn99 := decided(1, "node-pull")
	identifyIn50, identifyIn99 := decided(2, "pod-address")
	firstAdmission, admission := w.admission(b, r.addr.webhook, p.samples)
	e2e, histBefore, histAfter := w.reconciles(b, r.manager, p.reconciles)
	loadAfter := loadAverage()
	liveList := w.liveListLatency(b, 100)
	cost := w.podCost(b)

	// The table.
	mib := func(v int64) string { return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20)) }
	perTenK := func(hi, lo int64) float64 { return float64(hi-lo) / (1 << 20) / float64(p.pods-half) * 10000 }
	proxyGrowth, managerGrowth := perTenK(r.proxyMem.rss, r1.proxyMem.rss), perTenK(r.managerMem.rss, r1.managerMem.rss)
	at150k := func(rss int64, growth float64) string {
		return fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20)+growth*float64(150000-p.pods)/10000)
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
	ms := latency.Millis
	p5099 := func(d []time.Duration) string { a, z := latency.Percentiles(d); return ms(a) + " / " + ms(z) + " ms" }
	added := func(d, base []time.Duration) string {
		a, z := latency.Percentiles(d)
		a0, z0 := latency.Percentiles(base)
		return ms(a-a0) + " / " + ms(z-z0) + " ms"
	}
	perSec := func(c requestCounts) string {
		return fmt.Sprintf("%.2f/s", float64(c.total())/restTo.Sub(restFrom).Seconds())
	}
	met := func(ok ...bool) string {
		for _, v := range ok {
			if !v {
				return "NO"
			}
		}
		return "yes"
	}
	const MiB = 1 << 20
	_, deniedP99 := latency.Percentiles(denied)
	_, identifyP99 := latency.Percentiles(identify)
	_, admissionP99 := latency.Percentiles(admission)
	_, allowedP99 := latency.Percentiles(allowed)
	_, directP99 := latency.Percentiles(direct)
	reconciler := map[string]string{"controller": "connector"}
	rec50, recN := histogramQuantile(histBefore, histAfter, "controller_runtime_reconcile_time_seconds", reconciler, 0.5)
	rec99, _ := histogramQuantile(histBefore, histAfter, "controller_runtime_reconcile_time_seconds", reconciler, 0.99)
	inProxy := func(p50, p99 time.Duration) string { return ms(p50) + " / " + ms(p99) + " ms" }

	rows := [][5]string{
		{"figure", "proxy", "manager", "goal", "met"},
		{"initial sync: process start to /readyz 200", secs(r.proxy.sync), secs(r.manager.sync), "<= 30 s",
			met(r.proxy.sync <= 30*time.Second, r.manager.sync <= 30*time.Second)},
		{fmt.Sprintf("first reconcile of all %d Connectors (from start)", p.connectors), "-", secs(r.reconciled), "-", ""},
		{fmt.Sprintf("RSS after sync (+%s settle)", settle), mib(r.proxyMem.rss), mib(r.managerMem.rss), "<= 128 MiB",
			met(r.proxyMem.rss <= 128*MiB, r.managerMem.rss <= 128*MiB)},
		{fmt.Sprintf("RSS after churning %d pods (+%s)", churned, settle), mib(proxyChurn.rss), mib(managerChurn.rss), "-", ""},
		{fmt.Sprintf("RSS growth per 10,000 marked pods (%d->%d)", half, p.pods), fmt.Sprintf("%.1f MiB", proxyGrowth), fmt.Sprintf("%.1f MiB", managerGrowth),
			"<= 20 MiB", met(proxyGrowth <= 20, managerGrowth <= 20)},
		{"RSS at 150,000 marked pods (computed, not measured)", at150k(r.proxyMem.rss, proxyGrowth), at150k(r.managerMem.rss, managerGrowth), "-", ""},
		{fmt.Sprintf("API requests at rest (%s window)", p.rest), perSec(atRest[proxyUser]), perSec(atRest[managerUser]), "-", ""},
		{"node-pull authorisation, DENIED, p50 / p99", p5099(denied), "-", "p99 <= 1 ms", met(deniedP99 <= time.Millisecond)},
		{"  the same minus GET /v2/ 401 (TLS+HTTP)", added(denied, deniedBase), "-", "", ""},
		{"  the decision, timed in the proxy (histogram)", inProxy(deniedIn50, deniedIn99), "-", "p99 <= 1 ms", met(deniedIn99 <= time.Millisecond)},
		{"node pull allowed (relayed HEAD), p50 / p99", p5099(allowed), "-", "", ""},
		{"  added to a direct HEAD to Harbor", added(allowed, direct), "-", "p99 <= 1 ms", met(allowedP99-directP99 <= time.Millisecond)},
		{"  the decision, timed in the proxy (histogram)", inProxy(allowedIn50, allowedIn99), "-", "p99 <= 1 ms", met(allowedIn99 <= time.Millisecond)},
		{"forward identification by address, p50 / p99", p5099(identify), "-", "p99 <= 1 ms", met(identifyP99 <= time.Millisecond)},
		{"  the same minus a non-proxy request (TCP+HTTP)", added(identify, identifyBase), "-", "", ""},
		{"  the identification, timed in the proxy (histogram)", inProxy(identifyIn50, identifyIn99), "-", "p99 <= 1 ms", met(identifyIn99 <= time.Millisecond)},
		{fmt.Sprintf("admission review (%d connectors cached), p50 / p99", p.connectors), "-", p5099(admission), "p99 <= 5 ms", met(admissionP99 <= 5*time.Millisecond)},
		{fmt.Sprintf("Connector reconcile (histogram, %d), p50 / p99", recN), "-", ms(rec50) + " / " + ms(rec99) + " ms", "-", ""},
		{"  spec change to status observed (watch), p50 / p99", "-", p5099(e2e), "-", ""},
	}
	fmt.Printf("\nscale: %d nodes, %d marked pods, %d namespaces, %d connectors; one envtest API server, the test Harbor, the proxy and the manager as processes, all on this machine's %d cores\n",
		p.nodes, p.pods, p.namespaces, p.connectors, runtime.NumCPU())
	fmt.Printf("fill (not a goal): namespaces, connectors, secrets, nodes %s; %d pods %s; %d more %s; churn of %d pods (delete + create + status) %s\n",
		secs(fillBase), half, secs(fillHalf), p.pods-half, secs(fillRest), churned, secs(churnTime))
	for _, row := range rows {
		fmt.Printf("  %-56s %-24s %-24s %-12s %s\n", row[0], row[1], row[2], row[3], row[4])
	}
	fmt.Printf("latencies: client side over loopback, one request at a time at %d/s, %d each (reverse listener: TLS keep-alive; forward: a new TCP connection per CONNECT; admission: HTTPS keep-alive); \"timed in the proxy\": connectors_proxy_decision_seconds over the same requests, interpolated inside its buckets (0.1, 0.25, 0.5, 1, 2.5, 5 ms, ...)\n", rate, p.samples)
	fmt.Printf("  load average (1 min, every process on the machine) before and after the latency measurements: %s, %s\n", loadBefore, loadAfter)
	fmt.Printf("at rest, by verb: proxy %s; manager %s\n", atRest[proxyUser], atRest[managerUser])
	fmt.Printf("  manager at rest in detail: %s\n", atRest[managerUser].detail())
	fmt.Printf("  not in the window: the manager re-probes each Ready Connector every --probe-interval (5m) with 2 live Secret GETs (auth, CA): %d x 2 / 300 s = %.1f requests/s (computed)\n",
		p.connectors, float64(2*p.connectors)/300)
	fmt.Printf("start-up requests (proxy start to the manager's first reconcile of every Connector): proxy %d (%s); manager %d (%s)\n",
		startup[proxyUser].total(), startup[proxyUser].detail(), startup[managerUser].total(), startup[managerUser].detail())
	fmt.Printf("at %d pods: proxy sync %s, RSS %s; manager sync %s, RSS %s, first reconcile of all Connectors %s\n",
		half, secs(r1.proxy.sync), mib(r1.proxyMem.rss), secs(r1.manager.sync), mib(r1.managerMem.rss), secs(r1.reconciled))
	heapMiB := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	fmt.Printf("Go heap in use (go_memstats_heap_inuse_bytes) with the RSS above: proxy %s at %d pods, %s at %d, %s after churn (%.1f MiB per 10,000 pods); manager %s, %s, %s\n",
		heapMiB(r1.proxyHeap), half, heapMiB(r.proxyHeap), p.pods, heapMiB(proxyChurnHeap), (r.proxyHeap-r1.proxyHeap)/(1<<20)/float64(p.pods-half)*10000,
		heapMiB(r1.managerHeap), heapMiB(r.managerHeap), heapMiB(managerChurnHeap))
	ll50, ll99 := latency.Percentiles(liveList)
	fmt.Printf("the live read behind a node-pull miss, timed from the benchmark (List the Pending marked pods on one node, label and field selectors, protobuf, from the watch cache, %d pods stored): p50 %s ms, p99 %s ms\n",
		p.pods+len(w.forward), ms(ll50), ms(ll99))
	fmt.Printf("one marked pod as stored: %d bytes of JSON, managedFields %d of them; decoded, in this process (%d pods): %.1f KiB each as listed, %.1f KiB without managedFields, %.2f KiB as the proxy's index holds it (policies.MarkedPod, without the index's maps)\n",
		cost.jsonBytes, cost.managedFieldsBytes, cost.pods, cost.full/1024, cost.noManagedFields/1024, cost.reduced/1024)
	fmt.Printf("peak RSS (VmHWM) at %d pods, at the end: proxy %s, manager %s\n", p.pods, mib(r.proxy.memory(b).hwm), mib(r.manager.memory(b).hwm))
	fmt.Printf("Connectors Ready %d of %d, credentials copies %d; node-pull DENIED: %d live reads made of %d requests (5/s, burst 10); first admission review (starts the Namespace informer) %s ms\n",
		r.ready, p.connectors, r.copies, int(liveReads), p.samples, ms(firstAdmission))
	fmt.Printf("wall time %s\n", secs(time.Since(wall)))

	b.ReportMetric(r.proxy.sync.Seconds(), "proxy-sync-s")
	b.ReportMetric(float64(r.proxyMem.rss)/MiB, "proxy-RSS-MiB")
	b.ReportMetric(float64(r.managerMem.rss)/MiB, "manager-RSS-MiB")
	b.ReportMetric(proxyGrowth, "proxy-MiB/10k-pods")
}

// liveListLatency times, from the benchmark, the List the proxy makes when its index has no pod
// justifying a node pull: the Pending marked pods on one node, by label and field selectors, in
// protobuf, from the API server's watch cache (resourceVersion "0", as proxyserver.LiveReads asks).
func (w *world) liveListLatency(b *testing.B, n int) []time.Duration {
	var out []time.Duration
	paced(n, func(i int) {
		start := time.Now()
		_, err := w.cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{ResourceVersion: "0",
			LabelSelector: policies.LabelProxyInjected + "=true", FieldSelector: "status.phase=Pending,spec.nodeName=" + w.forward[i%len(w.forward)].node})
		must(b, err)
		out = append(out, time.Since(start))
	})
	return out
}

// loadAverage is the machine's 1-minute load average: the latencies' p99 depends on what else
// runs.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(raw))[0]
}
