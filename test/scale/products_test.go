package scale_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/testca"
)

// binaries are the product's two central binaries, built once per run as make build builds them.
type binaries struct{ proxy, manager string }

func build(b *testing.B, dir string) binaries {
	root, err := clients.RepoRoot()
	must(b, err)
	bins := binaries{proxy: filepath.Join(dir, "proxy"), manager: filepath.Join(dir, "manager")}
	for pkg, out := range map[string]string{"./cmd/proxy": bins.proxy, "./cmd/manager": bins.manager} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return bins
}

// proc is one product process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	probe   string // health probe address (/readyz)
	metrics string // plain-HTTP /metrics address
	log     string
	exited  chan struct{}
	// sync is the time from start until /readyz answered 200.
	sync time.Duration
}

// files is what both processes read: kubeconfigs, serving certificates, the CAs.
type files struct {
	proxyKubeconfig, managerKubeconfig string
	proxyTLS, interceptCA, webhookTLS  string
	proxyCAFile                        string
}

func (w *world) writeFiles(b *testing.B) files {
	f := files{
		proxyTLS: filepath.Join(w.dir, "proxy-tls"), interceptCA: filepath.Join(w.dir, "intercept-ca"),
		webhookTLS: filepath.Join(w.dir, "webhook-tls"), proxyCAFile: filepath.Join(w.dir, "proxy-ca.crt"),
	}
	for user, path := range map[string]*string{proxyUser: &f.proxyKubeconfig, managerUser: &f.managerKubeconfig} {
		// Cluster admins, like the suites' admin: the RBAC of the install is test/manifests'
		// business; here each binary only needs its own name in the audit log.
		u, err := w.env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
		must(b, err)
		kc, err := u.KubeConfig()
		must(b, err)
		*path = filepath.Join(w.dir, user+".kubeconfig")
		must(b, os.WriteFile(*path, kc, 0o600))
	}
	proxyLeaf, err := w.proxyCA.Issue("127.0.0.1", "localhost")
	must(b, err)
	webhookLeaf, err := w.webhookCA.Issue("127.0.0.1", "localhost")
	must(b, err)
	intercept, err := newInterceptCA()
	must(b, err)
	for dir, pair := range map[string][2][]byte{
		f.proxyTLS: {proxyLeaf.CertPEM, proxyLeaf.KeyPEM}, f.webhookTLS: {webhookLeaf.CertPEM, webhookLeaf.KeyPEM}, f.interceptCA: intercept,
	} {
		must(b, os.MkdirAll(dir, 0o700))
		must(b, os.WriteFile(filepath.Join(dir, "tls.crt"), pair[0], 0o600))
		must(b, os.WriteFile(filepath.Join(dir, "tls.key"), pair[1], 0o600))
	}
	must(b, os.WriteFile(f.proxyCAFile, w.proxyCA.CertPEM, 0o644))
	return f
}

// addresses of one run of both processes.
type addresses struct {
	proxyHTTPS, proxyForward, webhook string
	webhookPort                       int
}

func (w *world) startProxy(b *testing.B, bins binaries, f files, a addresses, tag string) *proc {
	p := &proc{name: "proxy", probe: freeAddr(b), metrics: freeAddr(b), log: w.logFile("proxy-" + tag + ".log")}
	// The flags of config/proxy, on loopback addresses; metrics in plain HTTP so the benchmark
	// can read them without a token.
	p.start(b, bins.proxy,
		"--kubeconfig", f.proxyKubeconfig,
		"--https-address", a.proxyHTTPS, "--tls-cert-dir", f.proxyTLS,
		"--audience", "connectors-proxy", "--drain-timeout", "5s",
		"--forward-address", a.proxyForward, "--intercept-ca-dir", f.interceptCA, "--tunnel-policy", "public",
		"--node-forwarders", forwarderNS+"/"+forwarderSA, "--credentials-namespace", credentialsNS,
		"--metrics-bind-address", p.metrics, "--metrics-secure=false",
		"--health-probe-bind-address", p.probe)
	return p
}

func (w *world) startManager(b *testing.B, bins binaries, f files, a addresses, tag string) *proc {
	p := &proc{name: "manager", probe: freeAddr(b), metrics: freeAddr(b), log: w.logFile("manager-" + tag + ".log")}
	// The flags of config/manager, on loopback addresses.
	p.start(b, bins.manager,
		"--kubeconfig", f.managerKubeconfig,
		"--leader-elect", "--leader-election-namespace", productNS,
		"--proxy-address", "https://"+a.proxyHTTPS, "--proxy-ca-file", f.proxyCAFile,
		"--webhook-cert-dir", f.webhookTLS, "--webhook-port", strconv.Itoa(a.webhookPort),
		"--forward-proxy-url", injection.ForwardProxyURL, "--pull-host", injection.PullHost,
		"--credentials-namespace", credentialsNS,
		"--metrics-bind-address", p.metrics, "--metrics-secure=false",
		"--health-probe-bind-address", p.probe)
	return p
}

func (p *proc) start(b *testing.B, bin string, args ...string) {
	log, err := os.Create(p.log)
	must(b, err)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.exited = make(chan struct{})
	p.started = time.Now()
	must(b, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); log.Close(); close(p.exited) }()
}

// waitReady polls /readyz every 20 ms and records the time from start to the first 200.
func (p *proc) waitReady(b *testing.B, timeout time.Duration) {
	deadline := p.started.Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if resp, err := c.Get("http://" + p.probe + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.sync = time.Since(p.started)
				return
			}
		}
		select {
		case <-p.exited:
			b.Fatalf("the %s exited before it was ready (log: %s)\n%s", p.name, p.log, tail(p.log))
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.Fatalf("the %s did not become ready in %s (log: %s)\n%s", p.name, timeout, p.log, tail(p.log))
}

func (p *proc) stop() {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// memory is a process's resident set now and its high-water mark, in bytes.
type memory struct{ rss, hwm int64 }

func (p *proc) memory(b *testing.B) memory {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	must(b, err)
	var m memory
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.hwm = kb << 10
		}
	}
	return m
}

// metric is one sample of the Prometheus text format.
type metric struct {
	name   string
	labels map[string]string
	value  float64
}

func (p *proc) scrape(b *testing.B) []metric {
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	must(b, err)
	defer resp.Body.Close()
	var out []metric
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		m := metric{labels: map[string]string{}}
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			m.name = line[:i]
			j := strings.LastIndexByte(line, '}')
			for _, kv := range splitLabels(line[i+1 : j]) {
				k, v, _ := strings.Cut(kv, "=")
				m.labels[k] = strings.Trim(v, `"`)
			}
			rest = strings.TrimSpace(line[j+1:])
		} else {
			m.name, rest, _ = strings.Cut(line, " ")
		}
		m.value, _ = strconv.ParseFloat(strings.Fields(rest)[0], 64)
		out = append(out, m)
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` at the commas between labels.
func splitLabels(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == ',' && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// sum adds the samples of name whose labels include match.
func sum(ms []metric, name string, match map[string]string) float64 {
	total := 0.0
	for _, m := range ms {
		if m.name == name && matches(m, match) {
			total += m.value
		}
	}
	return total
}

// matches reports whether m has every label of match.
func matches(m metric, match map[string]string) bool {
	for k, v := range match {
		if m.labels[k] != v {
			return false
		}
	}
	return true
}

// waitReconciled waits until the manager's two controllers have each reconciled every Connector
// once and their queues are empty, and returns the time from the manager's start.
func (w *world) waitReconciled(b *testing.B, m *proc, timeout time.Duration) time.Duration {
	C := float64(w.p.connectors)
	deadline := m.started.Add(timeout)
	for time.Now().Before(deadline) {
		ms := m.scrape(b)
		if sum(ms, "controller_runtime_reconcile_total", map[string]string{"controller": "connector"}) >= C &&
			sum(ms, "controller_runtime_reconcile_total", map[string]string{"controller": "connector-credentials"}) >= C &&
			sum(ms, "workqueue_depth", map[string]string{"name": "connector"}) == 0 &&
			sum(ms, "workqueue_depth", map[string]string{"name": "connector-credentials"}) == 0 {
			return time.Since(m.started)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("the manager did not reconcile %d Connectors in %s (log: %s)\n%s", w.p.connectors, timeout, m.log, tail(m.log))
	return 0
}

// readyConnectors counts the Connectors whose Ready condition is True, and the credentials
// copies in the product namespace.
func (w *world) readyConnectors(b *testing.B) (ready, copies int) {
	ctx := context.Background()
	var list v1alpha1.ConnectorList
	must(b, w.k8s.List(ctx, &list))
	for i := range list.Items {
		if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, v1alpha1.ConditionReady) {
			ready++
		}
	}
	secrets, err := w.cs.CoreV1().Secrets(credentialsNS).List(ctx, metav1.ListOptions{LabelSelector: access.LabelMirror + "=true"})
	must(b, err)
	return ready, len(secrets.Items)
}

// releaseLease deletes the manager's leader-election Lease after a stop: a manager stopped with
// SIGTERM does not release it, and the next one would wait for it to expire (15 s) before its
// controllers start, as a replica replacing a lost one does.
func (w *world) releaseLease(b *testing.B) {
	err := w.cs.CoordinationV1().Leases(productNS).Delete(context.Background(), "connectors-manager.connectors.alauda.io", metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		must(b, err)
	}
}

func newInterceptCA() ([2][]byte, error) {
	ca, err := testca.New("connectors interception scale CA")
	if err != nil {
		return [2][]byte{}, err
	}
	return [2][]byte{ca.CertPEM, ca.KeyPEM()}, nil
}

func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	defer ln.Close()
	return ln.Addr().String()
}

func tail(path string) string {
	raw, _ := os.ReadFile(path)
	if len(raw) > 4000 {
		raw = raw[len(raw)-4000:]
	}
	return string(raw)
}

// heap is the process's Go heap in use, from its metrics.
func (p *proc) heap(b *testing.B) float64 {
	return sum(p.scrape(b), "go_memstats_heap_inuse_bytes", nil)
}

// logFile is where a process logs: SCALE_LOG_DIR when set (kept after the run), else the run's
// temporary directory.
func (w *world) logFile(name string) string {
	if dir := os.Getenv("SCALE_LOG_DIR"); dir != "" {
		_ = os.MkdirAll(dir, 0o755)
		return filepath.Join(dir, name)
	}
	return filepath.Join(w.dir, name)
}
