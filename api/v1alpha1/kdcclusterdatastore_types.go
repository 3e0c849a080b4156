package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EtcdSpec describes the etcd StatefulSet DS-etcd of a datastore.
type EtcdSpec struct {
	// Replicas of etcd. Restores support exactly 1.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Enum=1;3;5;7;9
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// Version of etcd, for example v3.5.21.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Version string `json:"version,omitempty"`
}

// KdcClusterDatastoreSpec defines the desired state of a datastore.
type KdcClusterDatastoreSpec struct {
	// Etcd describes the etcd StatefulSet.
	// +kubebuilder:default={}
	// +optional
	Etcd EtcdSpec `json:"etcd,omitempty"`
}

// KdcClusterDatastoreStatus is the observed state of a datastore.
type KdcClusterDatastoreStatus struct {
	// Conditions of the datastore, written by its provisioner.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ReferenceCount is how many clusters use the datastore, written by Kube-DC.
	// +optional
	ReferenceCount int32 `json:"referenceCount,omitempty"`
}

// KdcClusterDatastore is the etcd of one or more tenant clusters.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kdc-ds,categories=kube-dc
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.etcd.replicas`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.etcd.version`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type KdcClusterDatastore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   KdcClusterDatastoreSpec   `json:"spec,omitempty"`
	Status KdcClusterDatastoreStatus `json:"status,omitempty"`
}

// KdcClusterDatastoreList contains a list of KdcClusterDatastore.
// +kubebuilder:object:root=true
type KdcClusterDatastoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KdcClusterDatastore `json:"items"`
}
