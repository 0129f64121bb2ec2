package certmanager

import (
	"context"
	"fmt"
	"time"

	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"golang.org/x/sync/errgroup"

	// The Issuer types the install uses. The issuers controllers check an Issuer through the
	// implementation its type registers here; ACME, Vault and Venafi are left out, and with them
	// their clients (an Issuer of those types is reported as not registered).
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// controllers are the controllers of cert-manager's controller binary that run here: the ones
// of its default set (--controllers=*) that the product's install uses. Left out: ACME (orders,
// challenges and its CertificateRequest issuer), the Vault and Venafi issuers, the ingress and
// Gateway shims (the install writes its Certificates itself) and certificates-metrics (there is
// no metrics endpoint here).
var controllers = []string{
	issuers.ControllerName,
	clusterissuers.ControllerName,
	approver.ControllerName, // approves every CertificateRequest, as in an install without a policy approver
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	trigger.ControllerName,
	issuing.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

// cert-manager's defaults for its controller (internal/apis/config/controller/v1alpha1 in
// v1.21). They are copied, not taken from cert-manager's config decoding: that package imports
// every controller, Venafi's included, whose vcert module the Go module proxy does not serve.
const (
	defaultClusterResourceNamespace        = "kube-system"
	defaultKubernetesAPIQPS                = 20 // unused when the API server has priority and fairness
	defaultKubernetesAPIBurst              = 50
	defaultNumberOfConcurrentWorkers       = 5
	defaultRequestMinimumBackoff           = time.Hour // after a failed CertificateRequest
	defaultRequestMaximumBackoff           = 32 * time.Hour
	defaultIssuerAmbientCredentials        = false
	defaultClusterIssuerAmbientCredentials = true
	defaultEnableCertificateOwnerRef       = false // Secrets outlive their Certificate
)

// defaultCopiedAnnotationPrefixes: annotations copied from a Certificate to its
// CertificateRequests, all but those of kubectl, Flux and Argo CD.
var defaultCopiedAnnotationPrefixes = []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"}

// runControllers is cert-manager's cmd/controller/app Run without the metrics, healthz and
// profiling servers and without leader election.
func runControllers(ctx context.Context, opts Options) error {
	ctx = logf.NewContext(ctx, logf.FromContext(ctx), "controller")
	log := logf.FromContext(ctx)
	clusterResourceNamespace := opts.ClusterResourceNamespace
	if clusterResourceNamespace == "" {
		clusterResourceNamespace = defaultClusterResourceNamespace
	}

	// As cmd/controller/app's buildControllerContextFactory, for the options these controllers
	// read (the ACME, ingress-shim and Gateway options are for controllers not run here).
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         opts.Kubeconfig,
		KubernetesAPIQPS:   defaultKubernetesAPIQPS,
		KubernetesAPIBurst: defaultKubernetesAPIBurst,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: defaultClusterIssuerAmbientCredentials,
			IssuerAmbientCredentials:        defaultIssuerAmbientCredentials,
		},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           defaultEnableCertificateOwnerRef,
			CopiedAnnotationPrefixes:                 defaultCopiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: defaultRequestMinimumBackoff,
			CertificateRequestMaximumBackoffDuration: defaultRequestMaximumBackoff,
		},
	})
	if err != nil {
		return err
	}
	base, err := factory.Build()
	if err != nil {
		return err
	}

	// Construct every controller before starting any: each registers its informers with the
	// shared factories, which start once all are registered.
	known := controller.Known()
	loops := make(map[string]controller.Interface, len(controllers))
	for _, name := range controllers {
		construct, ok := known[name]
		if !ok {
			return fmt.Errorf("controller %q is not registered by this cert-manager release", name)
		}
		if loops[name], err = construct(factory); err != nil {
			return fmt.Errorf("constructing %s: %w", name, err)
		}
	}
	log.Info("starting", "controllers", controllers, "clusterResourceNamespace", clusterResourceNamespace)

	g, gctx := errgroup.WithContext(ctx)
	for name, loop := range loops {
		g.Go(func() error {
			if err := loop.Run(defaultNumberOfConcurrentWorkers, gctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	base.SharedInformerFactory.Start(gctx.Done())
	base.KubeSharedInformerFactory.Start(gctx.Done())
	err = g.Wait()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	return err
}
