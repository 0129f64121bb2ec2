// Package certmanager runs cert-manager's own controllers and cainjector, from the
// github.com/cert-manager/cert-manager module, against a test bed's API server. cert-manager's
// command modules (controller-binary, cainjector-binary) are not served by the module proxy,
// so this package does what their cmd/controller/app and cmd/cainjector/app do, with the
// controllers the product's install needs (Issuers, Certificates, the SelfSigned and CA
// issuers, the approver) and cainjector for webhook configurations, CRDs and APIServices.
// No certificate is made here: every one comes from cert-manager's code.
package certmanager

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sync/errgroup"
)

// Options says where cert-manager runs. Everything else is cert-manager v1.21's default
// (controllers.go), except leader election, which is off: the test bed runs one replica.
type Options struct {
	// Kubeconfig is the kubeconfig file both parts use, as cert-manager's --kubeconfig.
	Kubeconfig string
	// ClusterResourceNamespace is where ClusterIssuers find their Secrets (cert-manager's
	// --cluster-resource-namespace); empty means cert-manager's default, kube-system.
	ClusterResourceNamespace string
}

// Run runs the controllers and cainjector until ctx is done or one of them fails. Logs go to
// the logr.Logger in ctx (cert-manager's klog logger when there is none).
func Run(ctx context.Context, opts Options) error {
	if opts.Kubeconfig == "" {
		return errors.New("cert-manager: a kubeconfig is required (in a pod, cert-manager would use its ServiceAccount; the test bed runs it outside)")
	}
	kubeconfig, err := filepath.Abs(opts.Kubeconfig)
	if err != nil {
		return err
	}
	opts.Kubeconfig = kubeconfig

	parent := ctx
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := runControllers(ctx, opts); err != nil {
			return fmt.Errorf("cert-manager controller: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := runCAInjector(ctx, opts); err != nil {
			return fmt.Errorf("cert-manager cainjector: %w", err)
		}
		return nil
	})
	err = g.Wait()
	if parent.Err() != nil {
		// Asked to stop: loops that were still waiting for their caches report that as an
		// error, which is not one.
		return nil
	}
	return err
}
