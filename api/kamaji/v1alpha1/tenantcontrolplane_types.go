package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is kamaji.clastix.io/v1alpha1.
	GroupVersion = schema.GroupVersion{Group: "kamaji.clastix.io", Version: "v1alpha1"}
	// SchemeBuilder registers the types.
	SchemeBuilder = runtime.NewSchemeBuilder(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &TenantControlPlane{}, &TenantControlPlaneList{})
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	})
	// AddToScheme adds the types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

const (
	// AnnotationPaused stops every reconcile of the TenantControlPlane while present, whatever
	// its value (Kamaji's controllers/utils/is_paused.go checks the key only).
	AnnotationPaused = "kamaji.clastix.io/paused"
	// LabelName is the label Kamaji puts on the control plane's pods: the TenantControlPlane's name.
	LabelName = "kamaji.clastix.io/name"
)

// TenantControlPlaneSpec is the part of the spec kdc-etcd-backup reads.
type TenantControlPlaneSpec struct {
	// DataStore is the name of the Kamaji DataStore the tenant's kube-apiserver uses.
	// +optional
	DataStore string `json:"dataStore,omitempty"`
	// +optional
	ControlPlane ControlPlane `json:"controlPlane,omitempty"`
}

// ControlPlane is spec.controlPlane.
type ControlPlane struct {
	// +optional
	Deployment DeploymentSpec `json:"deployment,omitempty"`
}

// DeploymentSpec is spec.controlPlane.deployment.
type DeploymentSpec struct {
	// Replicas is what Kamaji writes into the control plane Deployment's spec.replicas.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// TenantControlPlaneStatus is the part of the status kdc-etcd-backup reads.
type TenantControlPlaneStatus struct {
	// +optional
	Storage StorageStatus `json:"storage,omitempty"`
}

// StorageStatus is status.storage: where the tenant's data lives.
type StorageStatus struct {
	// +optional
	Driver string `json:"driver,omitempty"`
	// +optional
	DataStoreName string `json:"dataStoreName,omitempty"`
	// +optional
	Setup DataStoreSetupStatus `json:"setup,omitempty"`
	// +optional
	Certificate CertificateStatus `json:"certificate,omitempty"`
}

// CertificateStatus is status.storage.certificate: the Secret of the tenant's etcd client
// certificate, with the keys ca.crt, server.crt and server.key.
type CertificateStatus struct {
	// +optional
	SecretName string `json:"secretName,omitempty"`
}

// DataStoreSetupStatus is status.storage.setup.
type DataStoreSetupStatus struct {
	// Schema is the tenant's etcd key prefix without its leading slash: the kube-apiserver runs
	// with --etcd-prefix=/<schema>.
	// +optional
	Schema string `json:"schema,omitempty"`
	// User is the tenant's etcd user (the common name of its client certificate).
	// +optional
	User string `json:"user,omitempty"`
}

// TenantControlPlane is a tenant's control plane run by Kamaji.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tcp
type TenantControlPlane struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TenantControlPlaneSpec   `json:"spec,omitempty"`
	Status TenantControlPlaneStatus `json:"status,omitempty"`
}

// TenantControlPlaneList is a list of TenantControlPlanes.
// +kubebuilder:object:root=true
type TenantControlPlaneList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TenantControlPlane `json:"items"`
}
