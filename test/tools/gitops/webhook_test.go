package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// A miniature of the product's webhook (webhook/ in the root module, which this module cannot
// import without taking the product's k8s.io versions): for a Pod or Job annotated with a
// connector, in a namespace whose label selects the webhook, it makes the three kinds of change
// the product makes, idempotently: an env var and a volume mount in every container, a CSI
// volume, and the image of the connector's registry rewritten to the pull host with
// imagePullPolicy Always; plus the injected label and the status annotation. A Job's pod
// template is mutated, the Job's annotation copied into it. On UPDATE it mutates only objects
// that carry the status annotation, as the product does.
const (
	webhookLabel      = "gitops-drift.test/webhook" // on Namespaces: which configuration selects them
	webhookCreateOnly = "create-only"               // a webhook registered for CREATE only
	webhookUpdateToo  = "create-update"             // for CREATE and UPDATE, like the product's

	connectorAnnotation = "connectors.cpaas.io/connector"
	statusAnnotation    = "connectors.cpaas.io/proxy-inject-status"
	injectedLabel       = "connectors.cpaas.io/proxy-injected"
	registryHost        = "harbor.example.com/"
	pullHost            = "127.0.0.1:5050"
	proxyURL            = "http://connectors-proxy.connectors-system.svc:3128"
	volumeName          = "connectors-proxy"
	webhookPath         = "mutate"
)

// webhookConfigurations registers the miniature twice: for CREATE and UPDATE (the product's
// configuration) and for CREATE only (a webhook that does not re-apply its mutation), each for
// the namespaces labelled with its mode.
func webhookConfigurations() []*admissionregistrationv1.MutatingWebhookConfiguration {
	var configs []*admissionregistrationv1.MutatingWebhookConfiguration
	for _, mode := range []string{webhookUpdateToo, webhookCreateOnly} {
		ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create}
		if mode == webhookUpdateToo {
			ops = append(ops, admissionregistrationv1.Update)
		}
		path := webhookPath
		none := admissionregistrationv1.SideEffectClassNone
		fail := admissionregistrationv1.Fail
		configs = append(configs, &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "gitops-drift-" + mode},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    mode + ".gitops-drift.test",
				AdmissionReviewVersions: []string{"v1"},
				ClientConfig: admissionregistrationv1.WebhookClientConfig{
					Service: &admissionregistrationv1.ServiceReference{Name: "unused", Namespace: "unused", Path: &path},
				},
				Rules: []admissionregistrationv1.RuleWithOperations{
					{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}},
					{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"jobs"}}},
				},
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{webhookLabel: mode}},
				SideEffects:       &none,
				FailurePolicy:     &fail,
			}},
		})
	}
	return configs
}

// miniInjector is the admission handler of the miniature.
type miniInjector struct{}

func (miniInjector) Handle(_ context.Context, req admission.Request) admission.Response {
	var obj map[string]any
	if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	o := &unstructured.Unstructured{Object: obj}
	connector := o.GetAnnotations()[connectorAnnotation]
	if connector == "" {
		return admission.Allowed("not annotated")
	}
	metaPath, specPath := []string{"metadata"}, []string{"spec"}
	if o.GetKind() == "Job" {
		metaPath, specPath = []string{"spec", "template", "metadata"}, []string{"spec", "template", "spec"}
	}
	meta := nestedMap(obj, metaPath...)
	annotations := nestedMap(meta, "annotations")
	if req.Operation == admissionv1.Update && annotations[statusAnnotation] == nil {
		return admission.Allowed("not mutated at creation")
	}
	ref := req.Namespace + "/" + connector
	annotations[connectorAnnotation] = connector
	annotations[statusAnnotation] = `{"connectors":["` + ref + `"],"volume":"` + volumeName + `","env":["HTTPS_PROXY"]}`
	nestedMap(meta, "labels")[injectedLabel] = "true"
	spec := nestedMap(obj, specPath...)
	for _, field := range []string{"initContainers", "containers"} {
		containers, _ := spec[field].([]any)
		for _, c := range containers {
			c := c.(map[string]any)
			c["env"] = ensureNamed(c["env"], map[string]any{"name": "HTTPS_PROXY", "value": proxyURL})
			c["volumeMounts"] = ensureNamed(c["volumeMounts"], map[string]any{"name": volumeName, "mountPath": "/var/run/connectors", "readOnly": true})
			if image, _ := c["image"].(string); strings.HasPrefix(image, registryHost) {
				c["image"] = pullHost + "/namespaces/" + req.Namespace + "/connectors/" + connector + "/" + strings.TrimPrefix(image, registryHost)
				c["imagePullPolicy"] = "Always"
			}
		}
	}
	spec["volumes"] = ensureNamed(spec["volumes"], map[string]any{"name": volumeName, "csi": map[string]any{
		"driver": "connectors-csi", "readOnly": true, "volumeAttributes": map[string]any{"connectors": ref},
	}})
	mutated, err := json.Marshal(obj)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, mutated)
}

// nestedMap returns the map at path in obj, creating empty ones on the way.
func nestedMap(obj map[string]any, path ...string) map[string]any {
	for _, k := range path {
		next, ok := obj[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[k] = next
		}
		obj = next
	}
	return obj
}

// ensureNamed appends item to the list unless an item of the same name is there.
func ensureNamed(list any, item map[string]any) []any {
	items, _ := list.([]any)
	for _, existing := range items {
		if m, ok := existing.(map[string]any); ok && m["name"] == item["name"] {
			return items
		}
	}
	return append(items, item)
}
