// Package v1alpha1 holds the connectors.alauda.io/v1alpha1 API: the Connector, which names a
// Harbor (or any OCI registry) address and the Secret holding the account the in-cluster proxy
// uses on behalf of workloads.
//
// +kubebuilder:object:generate=true
// +groupName=connectors.alauda.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "connectors.alauda.io", Version: "v1alpha1"}

	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
