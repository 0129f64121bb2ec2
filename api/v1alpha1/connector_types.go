package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConnectorClassName selects how the controller probes the registry and how the proxy talks to it.
// +kubebuilder:validation:Enum=harbor;oci
type ConnectorClassName string

const (
	// ClassHarbor is a Harbor 2.x registry: liveness via /api/v2.0/ping, auth via
	// /api/v2.0/users/current/permissions, registry access via Harbor's token service.
	ClassHarbor ConnectorClassName = "harbor"
	// ClassOCI is any registry speaking the OCI distribution API with token or basic auth.
	ClassOCI ConnectorClassName = "oci"
)

// AuthName names the kind of credential a Connector holds.
// +kubebuilder:validation:Enum=basicAuth
type AuthName string

// AuthBasic is a username/password pair in a Secret of type kubernetes.io/basic-auth.
const AuthBasic AuthName = "basicAuth"

// SecretReference points at a Secret in the Connector's own namespace.
type SecretReference struct {
	// Name of the Secret, in the Connector's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Namespace of the Secret. Optional; when set it must equal the Connector's namespace
	// (a Connector can never read another namespace's Secret).
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// LocalSecretReference points at a Secret in the Connector's namespace by name only.
type LocalSecretReference struct {
	// Name of the Secret, in the Connector's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// ConnectorAuth says which credential the proxy presents to the registry.
type ConnectorAuth struct {
	// Name of the auth type. basicAuth: a Secret of type kubernetes.io/basic-auth with
	// username and password (a Harbor robot account is recommended).
	Name AuthName `json:"name"`
	// SecretRef names the Secret holding the credential.
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`
}

// ConnectorSpec is what a platform admin declares.
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || self.auth.name != 'basicAuth' || has(self.auth.secretRef)",message="spec.auth.secretRef is required when spec.auth.name is basicAuth: name the kubernetes.io/basic-auth Secret holding the robot account"
type ConnectorSpec struct {
	// ConnectorClassName is the kind of registry: harbor (Harbor 2.x) or oci (any OCI
	// distribution registry).
	ConnectorClassName ConnectorClassName `json:"connectorClassName"`

	// Address is the registry's base URL, e.g. https://harbor.example.com. It must be an
	// http(s) URL without credentials, query or fragment.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",message="spec.address must be an http:// or https:// URL with a host, e.g. https://harbor.example.com"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z]+://[^/]*@')",message="spec.address must not contain credentials: put them in the Secret named by spec.auth.secretRef"
	// +kubebuilder:validation:XValidation:rule="!self.contains('?') && !self.contains('#')",message="spec.address must not contain a query or fragment"
	Address string `json:"address"`

	// Auth is the credential the proxy injects. Absent means anonymous access.
	// +optional
	Auth *ConnectorAuth `json:"auth,omitempty"`

	// CACertSecretRef names a Secret in the Connector's namespace whose keys ending in .crt or
	// .pem hold PEM CA certificates trusted for the registry, in addition to the system roots.
	// +optional
	CACertSecretRef *LocalSecretReference `json:"caCertSecretRef,omitempty"`
}

// HTTPAddress is where workloads reach the registry through the proxy.
type HTTPAddress struct {
	// URL of the connector's reverse-proxy prefix.
	// +optional
	URL string `json:"url,omitempty"`
}

// ProxyStatus describes how workloads reach this connector through the proxy.
type ProxyStatus struct {
	// HTTPAddress of the connector on the proxy.
	// +optional
	HTTPAddress *HTTPAddress `json:"httpAddress,omitempty"`
}

// ConnectorStatus is what the controller observed.
type ConnectorStatus struct {
	// Conditions: SecretReady, LivenessReady, AuthReady, ProxyReady and their summary Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Proxy is the connector's address on the in-cluster proxy.
	// +optional
	Proxy *ProxyStatus `json:"proxy,omitempty"`

	// ObservedGeneration is the metadata.generation the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// Connector gives workloads secretless access to one registry through the in-cluster proxy.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=connectors
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63",message="metadata.name must be a DNS label (lowercase letters, digits and '-', at most 63 characters): it becomes part of proxy paths and annotations"
// +kubebuilder:printcolumn:name="Class",type=string,JSONPath=`.spec.connectorClassName`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Connector struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ConnectorSpec   `json:"spec,omitempty"`
	Status ConnectorStatus `json:"status,omitempty"`
}

// ConnectorList is a list of Connectors.
//
// +kubebuilder:object:root=true
type ConnectorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Connector `json:"items"`
}
