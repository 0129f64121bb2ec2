package webhook

import (
	"context"
	"crypto/tls"
	"path/filepath"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/alauda/harbor-connector/policies/access"
)

// Paths the webhook configurations in config/webhook point at.
const (
	PodsPath = "/mutate-pods"
	JobsPath = "/mutate-jobs"
	// ValidatePodsPath serves the PodValidator (ValidatingWebhookConfiguration
	// connectors-pod-status).
	ValidatePodsPath = "/validate-pods"
)

// +kubebuilder:rbac:groups=connectors.alauda.io,resources=connectors,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Register serves the Pod and Job handlers and the Pod validator on the manager's webhook
// server; the validator checks against the injector's pull host. The webhook server
// runs on every replica (it needs no leader election); connectors and namespaces come from the
// manager's informer cache, with one live read on a miss.
func Register(mgr ctrl.Manager, injector *Injector) {
	if injector.Lookup == nil {
		injector.Lookup = &access.CachedSource{Cache: mgr.GetClient(), Live: mgr.GetAPIReader(), OnMiss: lookupMisses.Inc}
	}
	server := mgr.GetWebhookServer()
	server.Register(PodsPath, &webhook.Admission{Handler: &PodHandler{Injector: injector}})
	server.Register(JobsPath, &webhook.Admission{Handler: &JobHandler{Injector: injector}})
	server.Register(ValidatePodsPath, &webhook.Admission{Handler: &PodValidator{PullHost: injector.Config.PullHost, Lookup: injector.Lookup}})
}

// NewServer is the manager's webhook server: HTTPS on host:port with the tls.crt and tls.key in
// certDir (cert-manager's Secret), reloaded when they change, and the expiry of the certificate
// it serves in connectors_webhook_certificate_expiration_timestamp_seconds. The files must exist
// (the Secret volume is mounted before the container starts).
func NewServer(host string, port int, certDir string) (webhook.Server, error) {
	certs, err := certwatcher.New(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return nil, err
	}
	certs.RegisterCallback(func(c tls.Certificate) {
		if c.Leaf != nil { // tls.X509KeyPair fills it
			certificateExpiry.Set(float64(c.Leaf.NotAfter.Unix()))
		}
	})
	// A GetCertificate of our own: controller-runtime's server then keeps no watcher of its own.
	inner := webhook.NewServer(webhook.Options{Host: host, Port: port, TLSOpts: []func(*tls.Config){
		func(c *tls.Config) { c.GetCertificate = certs.GetCertificate },
	}})
	return &watchedServer{Server: inner, certs: certs}, nil
}

// watchedServer starts the certificate watcher with the server, on every replica (the server
// needs no leader election, and neither does the reload).
type watchedServer struct {
	webhook.Server
	certs *certwatcher.CertWatcher
}

func (s *watchedServer) Start(ctx context.Context) error {
	go func() { _ = s.certs.Start(ctx) }()
	return s.Server.Start(ctx)
}
