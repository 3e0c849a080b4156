package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is objectbucket.io/v1alpha1.
	GroupVersion = schema.GroupVersion{Group: "objectbucket.io", Version: "v1alpha1"}
	// SchemeBuilder registers the types.
	SchemeBuilder = runtime.NewSchemeBuilder(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &ObjectBucketClaim{}, &ObjectBucketClaimList{})
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	})
	// AddToScheme adds the types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// ObjectBucketClaimPhase is status.phase of a claim.
type ObjectBucketClaimPhase string

const (
	// PhaseBound: the bucket exists and its Secret and ConfigMap are written.
	PhaseBound ObjectBucketClaimPhase = "Bound"
	// PhasePending: the bucket is being provisioned.
	PhasePending ObjectBucketClaimPhase = "Pending"
	// PhaseReleased: the bucket was released.
	PhaseReleased ObjectBucketClaimPhase = "Released"
	// PhaseFailed: provisioning failed.
	PhaseFailed ObjectBucketClaimPhase = "Failed"
)

// Keys of the Secret and ConfigMap Rook writes next to a bound claim (same name as the claim).
const (
	SecretKeyAccessKeyID     = "AWS_ACCESS_KEY_ID"
	SecretKeySecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	ConfigMapKeyBucketName   = "BUCKET_NAME"
	ConfigMapKeyBucketHost   = "BUCKET_HOST"
	ConfigMapKeyBucketPort   = "BUCKET_PORT"
	ConfigMapKeyBucketRegion = "BUCKET_REGION"
)

// ObjectBucketClaimSpec is the part of the claim's spec kdc-etcd-backup reads.
type ObjectBucketClaimSpec struct {
	// +optional
	BucketName string `json:"bucketName,omitempty"`
	// +optional
	GenerateBucketName string `json:"generateBucketName,omitempty"`
	// +optional
	StorageClassName string `json:"storageClassName,omitempty"`
	// +optional
	AdditionalConfig map[string]string `json:"additionalConfig,omitempty"`
}

// ObjectBucketClaimStatus is the claim's status.
type ObjectBucketClaimStatus struct {
	// +optional
	Phase ObjectBucketClaimPhase `json:"phase,omitempty"`
}

// ObjectBucketClaim asks Rook for a bucket.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=obc
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
type ObjectBucketClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ObjectBucketClaimSpec   `json:"spec,omitempty"`
	Status ObjectBucketClaimStatus `json:"status,omitempty"`
}

// ObjectBucketClaimList is a list of claims.
// +kubebuilder:object:root=true
type ObjectBucketClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ObjectBucketClaim `json:"items"`
}
