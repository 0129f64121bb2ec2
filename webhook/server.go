package webhook

import (
	ctrl "sigs.k8s.io/controller-runtime"
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
