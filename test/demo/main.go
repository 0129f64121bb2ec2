// Command demo runs harbor-connector end to end on this machine with no cluster: an embedded
// API server (envtest, built on first run), the test Harbor over TLS with a private CA, and the
// manager and the registry proxy as local processes. It creates a Connector the way a platform
// admin would, shows a wrong password being reported and fixed, shows the manager's copy of the
// Connector's credentials that the proxy reads (in connectors-credentials), shows the webhook
// mutating an annotated Job, pushes and pulls with crane through the reverse and the forward
// proxy, and cleans up.
//
// The parts that need a real node (the node pull listener the kubelet pulls from, and the CSI
// driver the kubelet mounts) are named in the output rather than simulated: `make e2e` runs them
// on a real kubelet and containerd.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
	"github.com/alauda/harbor-connector/policies"
	"github.com/alauda/harbor-connector/policies/access"
	"github.com/alauda/harbor-connector/test/clients"
	testharbor "github.com/alauda/harbor-connector/test/harbor"
	"github.com/alauda/harbor-connector/test/kube"
)

func main() {
	// controller-runtime (envtest, the client) logs through a logger that must be set before
	// first use, or it prints a "log.SetLogger(...) was never called" stack trace. The demo
	// shows only errors from those libraries; the manager and the proxy log to their own files.
	ctrllog.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run() error {
	start := time.Now()
	root, err := clients.RepoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "harbor-connector-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// The demo drives only crane: install no other client (some come from Debian and need root).
	os.Setenv("CLIENTS_ONLY", "crane")

	step("Kubernetes binaries: kube-apiserver, etcd, kubectl (built from the Go module proxy on first run, 6 to 15 minutes on 2 cores; then cached)")
	assets := exec.Command(filepath.Join(root, "test", "tools", "k8s-assets.sh"))
	assets.Stderr = os.Stderr
	out, err := assets.Output()
	if err != nil {
		return fmt.Errorf("building envtest assets: %w", err)
	}
	os.Setenv("KUBEBUILDER_ASSETS", strings.TrimSpace(string(out)))

	step("crane, the registry client the app team uses below (installed from the Go module proxy on first run, then cached)")
	if _, err := clients.Lookup("crane"); err != nil {
		return fmt.Errorf("installing crane: %w", err)
	}

	step("Starting an embedded kube-apiserver + etcd with the Connector CRD")
	env, err := kube.Start(kube.WithWebhooks("config/webhook/manifests.yaml"))
	if err != nil {
		return err
	}
	defer env.Stop()
	admin, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(work, "kubeconfig")
	kc, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}
	k8s, err := client.New(env.Config, client.Options{Scheme: kube.Scheme()})
	if err != nil {
		return err
	}
	kubectlCmd := func(args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	}
	kubectl := func(args ...string) {
		cmd := kubectlCmd(args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		_ = cmd.Run()
	}
	kubectlOut := func(args ...string) (string, error) {
		out, err := kubectlCmd(args...).CombinedOutput()
		return string(out), err
	}

	// The credentials namespace, as the install creates it: the manager keeps its copies of the
	// Connectors' credentials there (--credentials-namespace) and nothing else is there, and the
	// proxy reads Secrets there only. Both binaries get the same value below.
	credentialsNS := access.DefaultCredentialsNamespace
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: credentialsNS}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", credentialsNS, err)
	}

	step("Starting the test Harbor (real distribution registry behind a Harbor 2.x front) over TLS with a private CA")
	// Clients never send loopback targets through HTTPS_PROXY, so the forward-proxy part needs a
	// name for this machine that resolves to it (its host name, usually in /etc/hosts).
	hostName := testharbor.LoopbackHostName()
	hosts := []string{"127.0.0.1", "localhost"}
	if hostName != "" {
		hosts = append(hosts, hostName)
	}
	harbor, err := testharbor.Start(testharbor.Options{TLS: true, Hosts: hosts})
	if err != nil {
		return err
	}
	defer harbor.Close()
	harbor.AddProject("team", false)
	robot, secret := harbor.AddRobot("team", "ci")
	fmt.Printf("    Harbor at %s, private project 'team', robot account %s\n", harbor.URL(), robot)

	step("Starting the registry proxy as a local process (HTTPS with its own CA, out of cluster with --kubeconfig)")
	fmt.Println("    compiling cmd/manager and cmd/proxy (first run: a minute or more without output)")
	build := exec.Command("go", "build", "-o", work+"/", "./cmd/manager", "./cmd/proxy")
	build.Dir, build.Stderr = root, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the manager and the proxy: %w", err)
	}
	managerBin, proxyBin := filepath.Join(work, "manager"), filepath.Join(work, "proxy")
	proxyAddr, proxyCAFile, err := proxyCertificates(work)
	if err != nil {
		return err
	}
	proxyLog, err := os.Create(filepath.Join(work, "proxy.log"))
	if err != nil {
		return err
	}
	forwardAddr, interceptCAFile, err := interceptionCA(work)
	if err != nil {
		return err
	}
	proxy := exec.Command(proxyBin, "--kubeconfig", kubeconfig, "--https-address", proxyAddr, "--tls-cert-dir", filepath.Join(work, "proxy-tls"),
		"--forward-address", forwardAddr, "--intercept-ca-dir", filepath.Join(work, "intercept-ca"),
		"--credentials-namespace", credentialsNS,
		// No metrics (their default, :8444, and the manager's :8443 would clash with other
		// processes on this machine) and no probe listener: nothing here scrapes or probes them.
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	proxy.Stdout, proxy.Stderr = proxyLog, proxyLog
	if err := proxy.Start(); err != nil {
		return err
	}
	defer func() { _ = proxy.Process.Kill(); _ = proxy.Wait() }()
	fmt.Printf("    reverse proxy at https://%s, forward proxy (HTTPS_PROXY) at http://%s\n", proxyAddr, forwardAddr)
	fmt.Printf("    (in a cluster: the connectors-proxy Service; here random free ports on this machine)\n")

	step("Starting the manager (controller + webhook) as a local process, out of cluster with --kubeconfig")
	managerLog, err := os.Create(filepath.Join(work, "manager.log"))
	if err != nil {
		return err
	}
	// The API server calls the manager's webhook at the address and with the CA envtest set in
	// the MutatingWebhookConfiguration from config/webhook, as cert-manager's cainjector would.
	wh := env.WebhookInstallOptions
	// The pull host is the install's default: the node pull listener's address on every node.
	const pullHost = "127.0.0.1:5050"
	manager := exec.Command(managerBin, "--kubeconfig", kubeconfig, "--leader-elect", "--leader-election-namespace", "default",
		"--credentials-namespace", credentialsNS,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:0", "--retry-interval", "5s",
		"--webhook-port", strconv.Itoa(wh.LocalServingPort), "--webhook-cert-dir", wh.LocalServingCertDir,
		"--forward-proxy-url", "http://"+forwardAddr, "--pull-host", pullHost,
		"--proxy-address", "https://"+proxyAddr, "--proxy-ca-file", proxyCAFile)
	manager.Stdout, manager.Stderr = managerLog, managerLog
	if err := manager.Start(); err != nil {
		return err
	}
	defer func() { _ = manager.Process.Kill(); _ = manager.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := "team-a"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}

	step("Platform admin: a basic-auth Secret with the robot account, its CA, and a Connector")
	robotSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor-robot"},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": robot, "password": "wrong-" + secret[:4]},
	}
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor-ca"}, Data: map[string][]byte{"ca.crt": harbor.CACertPEM()}}
	connector := &v1alpha1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "harbor", Annotations: map[string]string{"cpaas.io/description": "team Harbor"}},
		Spec: v1alpha1.ConnectorSpec{
			ConnectorClassName: v1alpha1.ClassHarbor,
			Address:            harbor.URL(),
			Auth:               &v1alpha1.ConnectorAuth{Name: v1alpha1.AuthBasic, SecretRef: &v1alpha1.SecretReference{Name: "harbor-robot"}},
			CACertSecretRef:    &v1alpha1.LocalSecretReference{Name: "harbor-ca"},
		},
	}
	for _, obj := range []client.Object{robotSecret, ca, connector} {
		if err := k8s.Create(ctx, obj); err != nil {
			return err
		}
	}
	fmt.Println("    (the Secret deliberately holds a wrong password first)")
	// The wrong password must be the failure shown (not, say, a probe that timed out).
	if err := waitCondition(ctx, k8s, connector, v1alpha1.ConditionAuthReady, metav1.ConditionFalse, v1alpha1.ReasonUnauthorized); err != nil {
		return err
	}
	kubectl("get", "connectors", "-n", ns)
	kubectl("get", "events", "-n", ns, "--field-selector", "reason=Unauthorized", "-o", "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message")

	step("Fixing the password in the Secret: the controller re-probes on the Secret change")
	robotSecret.StringData = map[string]string{"password": secret}
	if err := k8s.Update(ctx, robotSecret); err != nil {
		return err
	}
	if err := waitCondition(ctx, k8s, connector, v1alpha1.ConditionReady, metav1.ConditionTrue); err != nil {
		return err
	}
	kubectl("get", "connectors", "-n", ns)
	kubectl("get", "connector", "harbor", "-n", ns, "-o",
		`jsonpath={range .status.conditions[*]}{"    "}{.type}{"="}{.status}{" ("}{.reason}{"): "}{.message}{"\n"}{end}`)

	step("The manager's copy of the Connector's credentials in %s, the one namespace whose Secrets the proxy reads", credentialsNS)
	mirror, err := waitMirror(ctx, k8s, credentialsNS, connector, secret)
	if err != nil {
		return err
	}
	kubectl("get", "secrets", "-n", credentialsNS, "-l", access.LabelMirror+"=true")
	fmt.Printf("    %s: copy of connector %s (generation %s), keys %s; it followed the password fix\n",
		mirror.Name, mirror.Annotations[access.AnnotationMirrorOf], mirror.Annotations[access.AnnotationMirrorGeneration], strings.Join(dataKeys(mirror), ", "))
	fmt.Println("    (in a cluster the proxy's Role allows Secrets only in this namespace; here it runs with the demo's admin kubeconfig)")

	step("App team: an annotated Job in a namespace labelled %s=true", policies.LabelProxyInject)
	if err := k8s.Update(ctx, labelled(ns)); err != nil {
		return err
	}
	manifest := fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: build
  namespace: %s
  annotations:
    connectors.cpaas.io/connector: harbor
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: build
        image: %s/team/app:v1
`, ns, harbor.Host())
	jobFile := filepath.Join(work, "job.yaml")
	if err := os.WriteFile(jobFile, []byte(manifest), 0o644); err != nil {
		return err
	}
	fmt.Print(indent(manifest))
	if err := waitWebhook(ctx, kubectlOut, jobFile); err != nil {
		return err
	}
	// The baseline is the same Job without the annotation, defaulted by the API server in a dry
	// run, so the diff shows only what the webhook added.
	baselineFile := filepath.Join(work, "baseline.yaml")
	baselineManifest := strings.Replace(strings.Replace(manifest, "    connectors.cpaas.io/connector: harbor\n", "", 1), "name: build\n", "name: build-baseline\n", 1)
	if err := os.WriteFile(baselineFile, []byte(baselineManifest), 0o644); err != nil {
		return err
	}
	baseline, err := kubectlOut("create", "--dry-run=server", "-o", "yaml", "-f", baselineFile)
	if err != nil {
		return fmt.Errorf("dry run of the baseline Job: %v: %s", err, baseline)
	}
	kubectl("apply", "-f", jobFile)
	live, _ := kubectlOut("get", "job", "build", "-n", ns, "-o", "yaml")
	fmt.Println("\n    What the webhook changed in the Job's pod template (diff of spec.template):")
	fmt.Print(indent(diffTemplates(work, baseline, live)))
	fmt.Printf("\n    %s is the node pull listener's address: every node runs one on its loopback (the\n"+
		"    connectors-node DaemonSet), the kubelet pulls the rewritten image from it, and it relays the\n"+
		"    pull to the proxy, which allows it only for a pod on that node marked for this connector.\n"+
		"    HTTPS_PROXY is the proxy's forward listener above. This demo runs no kubelet (nor a Job\n"+
		"    controller), so the Job never runs a Pod; the next steps push and pull as a build tool in\n"+
		"    its Pod would.\n", pullHost)
	fmt.Println("\n    Re-applying the same manifest, as GitOps would: kubectl diff shows nothing")
	if out, err := kubectlCmd("diff", "-f", jobFile).Output(); err != nil || strings.TrimSpace(string(out)) != "" {
		return fmt.Errorf("kubectl diff after re-apply is not empty (%v):\n%s", err, out)
	}
	fmt.Println("    (empty)")

	step("App team: push and pull through the reverse proxy with crane, holding only a ServiceAccount token")
	if err := pushPull(ctx, work, env, ns, proxyAddr, proxyCAFile, harbor); err != nil {
		return err
	}

	step("App team: the same with the original image name, through HTTPS_PROXY (TLS interception of the Harbor host only)")
	if hostName == "" {
		fmt.Println("    skipped: this machine's host name does not resolve to a loopback address, and clients never proxy loopback targets")
	} else if err := forwardPushPull(ctx, work, env, k8s, kubectl, ns, hostName, harbor, forwardAddr, interceptCAFile, credentialsNS, secret); err != nil {
		return err
	}

	step("Summary")
	fmt.Printf(`    shown here:        Connector API and controller (Secret checks, Harbor probes over verified TLS,
                       robot accounts, conditions and events, recovery on Secret change, Ready);
                       the manager's copy of the credentials in %s, which the proxy reads;
                       admission webhook (image rewrite, proxy env, CSI volume, no credentials,
                       GitOps re-apply is a no-op); reverse proxy (ServiceAccount token in,
                       Harbor credentials added, crane push and pull); forward proxy
                       (HTTPS_PROXY, original image names, interception of the Harbor host only)
    not shown here:    the node pull listener (%s) and the CSI driver (the files in
                       /var/run/connectors) need a kubelet and a container runtime, which this
                       demo does not run; make e2e (as root) runs both on a real kubelet and
                       containerd on this machine
    the password never appears in the manager's or the proxy's log: %v
    took %s
`, credentialsNS, pullHost, !logContains(filepath.Join(work, "manager.log"), secret) && !logContains(filepath.Join(work, "proxy.log"), secret), time.Since(start).Round(time.Second))
	return nil
}

func labelled(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{policies.LabelProxyInject: "true"}}}
}

// waitWebhook waits until the manager's webhook answers (a server-side dry run of the Job is
// mutated), so the demo does not race the manager's start.
func waitWebhook(ctx context.Context, kubectl func(...string) (string, error), manifest string) error {
	for {
		out, err := kubectl("create", "--dry-run=server", "-o", "yaml", "-f", manifest)
		if err == nil && strings.Contains(out, policies.AnnotationStatus) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the webhook never answered: %s", out)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// diffTemplates shows two Jobs' pod templates as a unified diff, without the job controller's
// per-Job selector labels.
func diffTemplates(work, baseline, live string) string {
	template := func(doc string) string {
		var job batchv1.Job
		_ = yaml.Unmarshal([]byte(doc), &job)
		for _, k := range []string{"batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name", "controller-uid", "job-name"} {
			delete(job.Spec.Template.Labels, k)
		}
		out, _ := yaml.Marshal(job.Spec.Template)
		return string(out)
	}
	before, after := filepath.Join(work, "template-as-written.yaml"), filepath.Join(work, "template-as-stored.yaml")
	_ = os.WriteFile(before, []byte(template(baseline)), 0o644)
	_ = os.WriteFile(after, []byte(template(live)), 0o644)
	out, _ := exec.Command("diff", "-u", "--label", "as written (defaulted)", "--label", "as stored", before, after).CombinedOutput()
	return string(out)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}

// waitCondition waits until the Connector's condition has the status (and, if given, the
// reason); on timeout the error shows the condition as it last was.
func waitCondition(ctx context.Context, k8s client.Client, c *v1alpha1.Connector, condType string, status metav1.ConditionStatus, reason ...string) error {
	last := "not set"
	for {
		var got v1alpha1.Connector
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(c), &got); err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(got.Status.Conditions, condType); cond != nil {
			if cond.Status == status && (len(reason) == 0 || cond.Reason == reason[0]) {
				return nil
			}
			last = fmt.Sprintf("%s (%s): %s", cond.Status, cond.Reason, cond.Message)
		}
		select {
		case <-ctx.Done():
			want := string(status)
			if len(reason) > 0 {
				want += " (" + reason[0] + ")"
			}
			return fmt.Errorf("Connector %s/%s: %s never became %s; it is %s", c.Namespace, c.Name, condType, want, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitMirror waits until the manager's copy of c's credentials in credentialsNS is made for c as
// it is now (uid and generation) and holds password, and returns it.
func waitMirror(ctx context.Context, k8s client.Client, credentialsNS string, c *v1alpha1.Connector, password string) (*corev1.Secret, error) {
	key := access.MirrorKey(credentialsNS, policies.ConnectorRef{Namespace: c.Namespace, Name: c.Name})
	last := "no copy"
	for {
		var cur v1alpha1.Connector
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(c), &cur); err != nil {
			return nil, err
		}
		var s corev1.Secret
		switch err := k8s.Get(ctx, key, &s); {
		case err != nil:
			last = err.Error()
		case !access.IsMirrorOf(&s, &cur):
			last = "a copy made for another generation or Connector"
		case s.Annotations[access.AnnotationMirrorProblemReason] != "":
			last = "a copy recording " + s.Annotations[access.AnnotationMirrorProblemReason]
		case string(s.Data[access.MirrorPasswordKey]) != password:
			last = "a copy holding another password"
		default:
			return &s, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the manager never copied connector %s/%s's credentials to %s: %s", c.Namespace, c.Name, key, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func dataKeys(s *corev1.Secret) []string {
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func logContains(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), s)
}
