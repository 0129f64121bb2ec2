package kube

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/alauda/harbor-connector/policies"
)

// InstallLeftovers lists what of the install is still on the cluster after `make undeploy`:
// every object of the rendered install (Kustomize of the folder make deploy applied; its kinds
// are Namespace, ResourceQuota, ServiceAccount, Role, RoleBinding, ClusterRole,
// ClusterRoleBinding, ConfigMap, Service, Deployment, DaemonSet, PodDisruptionBudget,
// HorizontalPodAutoscaler, NetworkPolicy, CSIDriver, MutatingWebhookConfiguration,
// ValidatingWebhookConfiguration, ValidatingAdmissionPolicy(Binding), cert-manager's Issuer and
// Certificate, trust-manager's Bundle, and the CRD) but the CRD when keepCRD, and the driver
// connectors-csi on any CSINode (the kubelet drops it when the driver's registration socket
// goes). What the product made at run time lives in its three namespaces (cert-manager's Secrets,
// trust-manager's ConfigMaps, Leases and Events in connectors-system and connectors-node, the
// manager's credential copies in connectors-credentials), so the namespaces being gone covers it. An object still terminating is listed with "(terminating)". With
// keepCRD, the CRD must still be there; its absence is listed too.
func InstallLeftovers(ctx context.Context, cfg *rest.Config, rendered []*unstructured.Unstructured, keepCRD bool) ([]string, error) {
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, err
	}
	var left []string
	for _, obj := range rendered {
		name := obj.GetKind() + " " + obj.GetName()
		if ns := obj.GetNamespace(); ns != "" {
			name = obj.GetKind() + " " + ns + "/" + obj.GetName()
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(obj.GroupVersionKind())
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), got)
		gone := apierrors.IsNotFound(err) || meta.IsNoMatchError(err)
		if err != nil && !gone {
			return nil, err
		}
		crd := obj.GetKind() == "CustomResourceDefinition"
		switch {
		case crd && keepCRD && gone:
			left = append(left, name+" (deleted, but DELETE_CRD was not set)")
		case crd && keepCRD, gone:
		case got.GetDeletionTimestamp() != nil:
			left = append(left, name+" (terminating)")
		default:
			left = append(left, name)
		}
	}
	var nodes storagev1.CSINodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, err
	}
	for _, n := range nodes.Items {
		for _, d := range n.Spec.Drivers {
			if d.Name == policies.CSIDriverName {
				left = append(left, "CSINode "+n.Name+": driver "+d.Name+" still registered")
			}
		}
	}
	return left, nil
}

// NodeLeftovers lists the files the CSI driver keeps on a node with kubelet root directory
// kubeletRoot (its registration socket, its CSI socket and their directory) that are still
// there: after an uninstall, none.
func NodeLeftovers(kubeletRoot string) ([]string, error) {
	var left []string
	for _, p := range []string{
		filepath.Join(kubeletRoot, "plugins_registry", policies.CSIDriverName+"-reg.sock"),
		filepath.Join(kubeletRoot, "plugins", policies.CSIDriverName),
	} {
		_, err := os.Stat(p)
		switch {
		case err == nil:
			left = append(left, p)
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	return left, nil
}
