package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func entry(manager string, op metav1.ManagedFieldsOperationType, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, APIVersion: "apps/v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
}

// kubectl's applied fields become helm's; other managers' entries, and kubectl's non-apply
// ones, are left alone; an existing helm Apply entry absorbs kubectl's fields.
func TestTransferApplyOwner(t *testing.T) {
	kubectl := entry("kubectl", metav1.ManagedFieldsOperationApply, `{"f:spec":{"f:replicas":{}}}`)
	controller := entry("kube-controller-manager", metav1.ManagedFieldsOperationUpdate, `{"f:status":{}}`)
	kubectlEdit := entry("kubectl", metav1.ManagedFieldsOperationUpdate, `{"f:metadata":{"f:labels":{}}}`)

	out, changed, err := transferApplyOwner([]metav1.ManagedFieldsEntry{kubectl, controller, kubectlEdit}, "kubectl", "helm")
	require.NoError(t, err)
	assert.True(t, changed)
	require.Len(t, out, 3)
	assert.Equal(t, "helm", out[0].Manager)
	assert.JSONEq(t, `{"f:spec":{"f:replicas":{}}}`, string(out[0].FieldsV1.Raw))
	assert.Equal(t, controller, out[1])
	assert.Equal(t, kubectlEdit, out[2], "only applied fields move")

	helm := entry("helm", metav1.ManagedFieldsOperationApply, `{"f:spec":{"f:template":{}}}`)
	out, changed, err = transferApplyOwner([]metav1.ManagedFieldsEntry{helm, kubectl}, "kubectl", "helm")
	require.NoError(t, err)
	assert.True(t, changed)
	require.Len(t, out, 1, "one Apply entry per manager and version")
	assert.JSONEq(t, `{"f:spec":{"f:replicas":{},"f:template":{}}}`, string(out[0].FieldsV1.Raw))

	_, changed, err = transferApplyOwner([]metav1.ManagedFieldsEntry{helm, controller}, "kubectl", "helm")
	require.NoError(t, err)
	assert.False(t, changed, "nothing of kubectl's: nothing to write")
}
