// Package certmanager_test runs cert-manager's controllers and cainjector (Run) against the real
// API server, as the user test/certmanager/rbac.yaml authorises, and applies the install's
// cert-manager objects to them.
package certmanager_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/alauda/harbor-connector/test/certmanager"
	"github.com/alauda/harbor-connector/test/kube"
)

var (
	env *envtest.Environment
	k8s client.Client // a cluster admin, for the test's own reads and writes

	// stopped is closed when Run returns, with its error in runErr: a test waiting for
	// cert-manager fails at once instead of timing out.
	stopped = make(chan struct{})
	runErr  error
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	// Errors only: cert-manager logs through the logger in Run's context, cainjector's
	// injectors through controller-runtime's.
	logger := zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel))
	ctrl.SetLogger(logger)
	var err error
	if env, err = kube.Start(kube.WithCertManagerCRDs()); err != nil {
		return fail(err)
	}
	defer env.Stop()
	scheme := kube.Scheme()
	if err := cmapi.AddToScheme(scheme); err != nil {
		return fail(err)
	}
	if k8s, err = client.New(env.Config, client.Options{Scheme: scheme}); err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "cert-manager-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	kubeconfig, err := kube.CertManagerKubeconfig(context.Background(), env, k8s, dir)
	if err != nil {
		return fail(err)
	}

	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), logger))
	go func() {
		runErr = certmanager.Run(ctx, certmanager.Options{Kubeconfig: kubeconfig})
		close(stopped)
	}()
	code := m.Run()
	cancel()
	select {
	case <-stopped:
		if runErr != nil {
			return fail(fmt.Errorf("cert-manager: %w", runErr))
		}
	case <-time.After(30 * time.Second):
		return fail(errors.New("cert-manager did not stop within 30 s of its context's end"))
	}
	return code
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// waitFor polls check until it returns nil, for up to a minute; it fails the test with the last
// error, or at once if cert-manager has stopped.
func waitFor(t *testing.T, what string, check func(context.Context) error) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		select {
		case <-stopped:
			t.Fatalf("%s: cert-manager stopped: %v (last check: %v)", what, runErr, err)
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after a minute: %v", what, err)
		}
	}
}
