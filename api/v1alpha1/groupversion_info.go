// Package v1alpha1 holds the connectors.alauda.io/v1alpha1 API: the Connector, which names a
// Harbor (or any OCI registry) address and the Secret holding the account the in-cluster proxy
// uses on behalf of workloads.
//
// +kubebuilder:object:generate=true
// +groupName=connectors.alauda.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "connectors.alauda.io", Version: "v1alpha1"}

	// SchemeBuilder registers this package's types with a runtime.Scheme. The package depends
	// on apimachinery only (controller-runtime's scheme.Builder is deprecated for API packages).
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &Connector{}, &ConnectorList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
