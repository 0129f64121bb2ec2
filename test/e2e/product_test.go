//go:build e2e

package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/google/go-containerregistry/pkg/registry"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
	"github.com/alauda/harbor-connector/test/node"
)

// e2eOverlay is the overlay the suite's make images writes and make deploy applies: a folder of
// its own, so a run never replaces config/overlays/images, which may point at the user's
// registry; removed at teardown with the KUBELET_ROOT overlay make deploy generated from it.
const e2eOverlay = "config/overlays/e2e"

// The product as workloads reach it: through its Service, by its cluster DNS name.
const (
	proxyService = "connectors-proxy." + productNS + ".svc"
	forwardURL   = "http://" + proxyService + ":3128"
)

// product is the installed product: images built from this checkout with `make images` into
// the test bed's registry, installed with `make deploy`, exactly as README's "Install on a
// cluster" says, and then left to cert-manager, the kubelet and the Services.
type product struct {
	dir      string
	src      string // the checkout make runs in: this one, or an earlier build's (day 2's upgrade)
	repo     string // the registry repository the images go to
	registry *http.Server
	// env runs make and kubectl against the test bed (KUBECONFIG, the test bed's kubectl).
	env     []string
	proxyCA []byte // the CA workloads trust for the proxy, from cert-manager's Secret
	client  client.Client
}

// install builds and pushes the images, deploys, and waits until cert-manager has issued every
// Certificate, cainjector has filled the webhook's caBundle, and every Deployment and DaemonSet
// is Ready. Each step's duration is a phase of its own (README "Install" quotes them).
func install(ctx context.Context, timer *phases, work string, n *node.Node, src string) (*product, error) {
	p := &product{dir: filepath.Join(work, "product"), client: n.Client, src: src}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return p, err
	}
	kubeconfig, err := n.Kubeconfig("e2e-admin")
	if err != nil {
		return p, err
	}
	assets, err := kube.AssetsDir()
	if err != nil {
		return p, err
	}
	p.env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+assets+string(os.PathListSeparator)+os.Getenv("PATH"))
	if p.repo, err = p.startRegistry(); err != nil {
		return p, err
	}
	if err := p.deploy(ctx, timer, "install", n.KubeletRoot); err != nil {
		return p, err
	}
	var secret corev1.Secret
	if err := n.Client.Get(ctx, client.ObjectKey{Namespace: productNS, Name: "connectors-proxy-tls"}, &secret); err != nil {
		return p, err
	}
	p.proxyCA = secret.Data["ca.crt"]
	return p, nil
}

// deploy builds and pushes the images of p.src with make images, applies them with make deploy,
// and waits until cert-manager, cainjector and the rollout are done: an install, or an upgrade
// over an earlier one.
func (p *product) deploy(ctx context.Context, timer *phases, step, kubeletRoot string) error {
	if err := timer.run(step+": make images into the test bed's registry", func() error {
		return p.make(ctx, "images", "REGISTRY="+p.repo, "OVERLAY="+e2eOverlay)
	}); err != nil {
		return err
	}
	if err := timer.run(step+": make deploy", func() error {
		// The test bed's kubelet keeps its state under the node's directory.
		return p.make(ctx, "deploy", "OVERLAY="+e2eOverlay, "KUBELET_ROOT="+kubeletRoot)
	}); err != nil {
		return err
	}
	return timer.run(step+": certificates issued, caBundle injected, all Ready", func() error { return p.waitInstalled(ctx) })
}

// startRegistry serves an in-memory OCI registry on loopback for the product images; the
// node's containerd pulls from 127.0.0.1 over plain HTTP like from any registry (TESTING.md).
func (p *product) startRegistry() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	p.registry = &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.registry.Serve(l) }()
	return l.Addr().String() + "/harbor-connector", nil
}

// make runs a make target in p.src, its output in the product's log directory.
func (p *product) make(ctx context.Context, target string, vars ...string) error {
	return p.run(ctx, "make-"+target, "make", append([]string{"--no-print-directory", target}, vars...)...)
}

// run runs a command in p.src with the test bed's KUBECONFIG and kubectl, its output appended
// to <log>.log in the product's log directory.
func (p *product) run(ctx context.Context, log, name string, args ...string) error {
	logPath := filepath.Join(p.dir, log+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	fmt.Fprintf(out, "==== %s %s in %s\n", name, strings.Join(args, " "), p.src)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = p.src, p.env, out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w; last lines of %s:\n%s", name, strings.Join(args, " "), err, logPath, node.Tail(logPath, 30))
	}
	return nil
}

// waitInstalled waits for what a platform team checks after an install.
func (p *product) waitInstalled(ctx context.Context) error {
	c := p.client
	err := waitFor(ctx, 3*time.Minute, func() (bool, error) {
		var certs cmapi.CertificateList
		if err := c.List(ctx, &certs); err != nil {
			return false, err
		}
		if len(certs.Items) == 0 {
			return false, nil
		}
		for _, cert := range certs.Items {
			if !certificateReady(&cert) {
				return false, nil
			}
		}
		return true, nil
	}, func() string { return "cert-manager did not issue every Certificate: " + p.certificateSummary(ctx) })
	if err != nil {
		return err
	}
	err = waitFor(ctx, time.Minute, func() (bool, error) {
		var hooks admissionregistrationv1.MutatingWebhookConfigurationList
		if err := c.List(ctx, &hooks); err != nil {
			return false, err
		}
		for _, h := range hooks.Items {
			for _, wh := range h.Webhooks {
				if len(wh.ClientConfig.CABundle) == 0 {
					return false, nil
				}
			}
		}
		return len(hooks.Items) > 0, nil
	}, func() string { return "cainjector did not fill the webhook's caBundle" })
	if err != nil {
		return err
	}
	return waitFor(ctx, 4*time.Minute, func() (bool, error) { return p.workloadsReady(ctx) }, func() string {
		return "the product's Deployments and DaemonSets did not become Ready: " + podSummary(ctx, c, "")
	})
}

// workloadsReady: every Deployment and DaemonSet on the cluster (the test bed runs only the
// product's) has all its replicas updated and ready.
func (p *product) workloadsReady(ctx context.Context) (bool, error) {
	var deployments appsv1.DeploymentList
	if err := p.client.List(ctx, &deployments); err != nil {
		return false, err
	}
	var daemonSets appsv1.DaemonSetList
	if err := p.client.List(ctx, &daemonSets); err != nil {
		return false, err
	}
	if len(deployments.Items) == 0 || len(daemonSets.Items) == 0 {
		return false, nil
	}
	for _, d := range deployments.Items {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		// Replicas counts old pods too: equal to want once a rollout has removed them.
		if d.Status.ObservedGeneration < d.Generation || d.Status.Replicas != want || d.Status.UpdatedReplicas != want || d.Status.ReadyReplicas != want {
			return false, nil
		}
	}
	for _, ds := range daemonSets.Items {
		if ds.Status.ObservedGeneration < ds.Generation || ds.Status.DesiredNumberScheduled == 0 ||
			ds.Status.NumberReady != ds.Status.DesiredNumberScheduled || ds.Status.UpdatedNumberScheduled != ds.Status.DesiredNumberScheduled {
			return false, nil
		}
	}
	return true, nil
}

func certificateReady(cert *cmapi.Certificate) bool {
	for _, cond := range cert.Status.Conditions {
		if cond.Type == cmapi.CertificateConditionReady {
			return cond.Status == cmmeta.ConditionTrue
		}
	}
	return false
}

func (p *product) certificateSummary(ctx context.Context) string {
	var certs cmapi.CertificateList
	if err := p.client.List(ctx, &certs); err != nil {
		return err.Error()
	}
	var lines []string
	for _, cert := range certs.Items {
		state := "no Ready condition"
		for _, cond := range cert.Status.Conditions {
			if cond.Type == cmapi.CertificateConditionReady {
				state = fmt.Sprintf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
			}
		}
		lines = append(lines, cert.Namespace+"/"+cert.Name+": "+state)
	}
	return "\n" + strings.Join(lines, "\n")
}

// stop stops the registry and removes the generated overlays; the product's pods go with the
// node.
func (p *product) stop() error {
	var errs []error
	if p.registry != nil {
		errs = append(errs, p.registry.Close())
	}
	if root, err := clients.RepoRoot(); err == nil {
		for _, dir := range []string{e2eOverlay, "config/overlays/deploy"} {
			errs = append(errs, os.RemoveAll(filepath.Join(root, dir)))
		}
	}
	return errors.Join(errs...)
}

// dumpLogs prints the make logs and the tail of each product pod's log, for a failure's context.
func (p *product) dumpLogs(n *node.Node) {
	files, _ := filepath.Glob(filepath.Join(p.dir, "*.log"))
	for _, f := range files {
		fmt.Printf("---- %s (last lines)\n%s\n", f, node.Tail(f, 20))
	}
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pods corev1.PodList
	if err := p.client.List(ctx, &pods); err != nil {
		return
	}
	tail := int64(40)
	for _, pod := range pods.Items {
		if !strings.HasPrefix(pod.Namespace, "connectors-") {
			continue
		}
		for _, ctr := range pod.Spec.Containers {
			logs, err := n.Clientset.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: ctr.Name, TailLines: &tail}).DoRaw(ctx)
			if err != nil {
				logs = []byte(err.Error())
			}
			fmt.Printf("---- pod %s/%s container %s (last %d lines)\n%s\n", pod.Namespace, pod.Name, ctr.Name, tail, logs)
		}
	}
}
