package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/test/clients"
	"github.com/alauda/harbor-connector/test/kube"
)

// The command as the test bed starts it: its flags, under the rights of
// test/certmanager/rbac.yaml, a CA ClusterIssuer whose Secret is in the namespace
// -cluster-resource-namespace names, and a clean exit on SIGTERM.
func TestCommand(t *testing.T) {
	ctx := context.Background()
	root, err := clients.RepoRoot()
	require.NoError(t, err)
	env, err := kube.Start(kube.WithCertManagerCRDs())
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	scheme := kube.Scheme()
	require.NoError(t, cmapi.AddToScheme(scheme))
	k8s, err := client.New(env.Config, client.Options{Scheme: scheme})
	require.NoError(t, err)
	dir := t.TempDir()
	kubeconfig, err := kube.CertManagerKubeconfig(ctx, env, k8s, dir)
	require.NoError(t, err)

	build := exec.Command("go", "build", "-o", filepath.Join(dir, "cert-manager"), "./test/tools/cert-manager")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	const resources = "test-bed-cert-manager"
	logs, err := os.Create(filepath.Join(dir, "cert-manager.log"))
	require.NoError(t, err)
	defer logs.Close()
	cmd := exec.Command(filepath.Join(dir, "cert-manager"), "-kubeconfig", kubeconfig, "-cluster-resource-namespace", resources)
	cmd.Stderr = logs
	require.NoError(t, cmd.Start())
	log := func() string { b, _ := os.ReadFile(logs.Name()); return string(b) }
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	for _, ns := range []string{resources, "workload"} {
		require.NoError(t, k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	selfSigned := &cmapi.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "self-signed"},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}}}
	rootCA := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: resources, Name: "root"},
		Spec: cmapi.CertificateSpec{IsCA: true, CommonName: "root", SecretName: "root",
			IssuerRef: cmmeta.IssuerReference{Kind: cmapi.ClusterIssuerKind, Name: selfSigned.Name}}}
	ca := &cmapi.ClusterIssuer{ObjectMeta: metav1.ObjectMeta{Name: "ca"},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: rootCA.Spec.SecretName}}}}
	leaf := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Namespace: "workload", Name: "leaf"},
		Spec: cmapi.CertificateSpec{DNSNames: []string{"leaf.workload.svc"}, SecretName: "leaf",
			IssuerRef: cmmeta.IssuerReference{Kind: cmapi.ClusterIssuerKind, Name: ca.Name}}}
	for _, obj := range []client.Object{selfSigned, rootCA, ca, leaf} {
		require.NoError(t, k8s.Create(ctx, obj))
	}
	ready := cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue}
	isReady := func() bool {
		var crt cmapi.Certificate
		return k8s.Get(ctx, client.ObjectKeyFromObject(leaf), &crt) == nil && apiutil.CertificateHasCondition(&crt, ready)
	}
	if !assert.Eventually(t, isReady, time.Minute, 250*time.Millisecond, "Certificate %s/%s from the CA ClusterIssuer", leaf.Namespace, leaf.Name) {
		t.Fatalf("cert-manager's log:\n%s", log())
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "exit after SIGTERM; log:\n%s", log())
}
