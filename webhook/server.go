package webhook

import (
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/alauda/harbor-connector/policies/access"
)

// Paths the MutatingWebhookConfiguration in config/webhook points at.
const (
	PodsPath = "/mutate-pods"
	JobsPath = "/mutate-jobs"
)

// +kubebuilder:rbac:groups=connectors.alauda.io,resources=connectors,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// Register serves the Pod and Job handlers on the manager's webhook server. The webhook server
// runs on every replica (it needs no leader election); connectors and namespaces come from the
// manager's informer cache, with one live read on a miss.
func Register(mgr ctrl.Manager, injector *Injector) {
	if injector.Lookup == nil {
		injector.Lookup = &access.CachedSource{Cache: mgr.GetClient(), Live: mgr.GetAPIReader(), OnMiss: lookupMisses.Inc}
	}
	server := mgr.GetWebhookServer()
	server.Register(PodsPath, &webhook.Admission{Handler: &PodHandler{Injector: injector}})
	server.Register(JobsPath, &webhook.Admission{Handler: &JobHandler{Injector: injector}})
}
