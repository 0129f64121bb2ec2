// Command cert-manager runs cert-manager's controllers (Issuers, Certificates, the SelfSigned
// and CA issuers, the approver) and its cainjector against the test bed's API server, built
// from the cert-manager module because its own commands are not served by the module proxy
// (test/certmanager says what runs and what does not).
//
//	go run ./test/tools/cert-manager -kubeconfig cert-manager.kubeconfig [-cluster-resource-namespace kube-system] [-v 2]
//
// It needs cert-manager's CRDs installed (kube.WithCertManagerCRDs) and a kubeconfig with the
// rights of test/certmanager/rbac.yaml (kube.CertManagerKubeconfig writes one; an admin's does
// too). It runs until SIGINT or SIGTERM, and exits 1 when a controller fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/alauda/harbor-connector/test/certmanager"
)

func main() {
	// A flag set of its own: controller-runtime registers its own -kubeconfig on the global one.
	flags := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	var opts certmanager.Options
	flags.StringVar(&opts.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the API server (default $KUBECONFIG)")
	flags.StringVar(&opts.ClusterResourceNamespace, "cluster-resource-namespace", "", "namespace of the Secrets ClusterIssuers use (default kube-system, as cert-manager)")
	klog.InitFlags(flags) // -v and the other klog flags, as cert-manager's commands take them
	_ = flags.Parse(os.Args[1:])

	// cert-manager logs through klog; cainjector's controller-runtime parts through ctrl.Log.
	ctrl.SetLogger(klog.Background())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := certmanager.Run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
