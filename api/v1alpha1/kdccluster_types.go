package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupSpec configures the scheduled etcd snapshots of one tenant cluster.
type BackupSpec struct {
	// Enabled turns scheduled backups on or off.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// Schedule is a 5-field cron expression, evaluated in UTC.
	// +kubebuilder:default="0 2 * * *"
	// +kubebuilder:validation:MinLength=9
	// +kubebuilder:validation:MaxLength=100
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// RetentionDays is how long snapshots are kept (an S3 lifecycle rule on the cluster's prefix).
	// +kubebuilder:default=7
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=365
	// +optional
	RetentionDays int32 `json:"retentionDays,omitempty"`

	// DestinationPath overrides the bucket of the ObjectBucketClaim: s3://bucket[/prefix].
	// +kubebuilder:validation:Pattern=`^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?$`
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	DestinationPath string `json:"destinationPath,omitempty"`

	// S3Endpoint overrides the controller's S3_ENDPOINT (and the ObjectBucketClaim's endpoint).
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	S3Endpoint string `json:"s3Endpoint,omitempty"`

	// S3CredentialSecret names a Secret in the cluster's namespace with AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY. Default: the ObjectBucketClaim's Secret managed-k8s-backups.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	S3CredentialSecret string `json:"s3CredentialSecret,omitempty"`
}

// DataStoreRef points at the KdcClusterDatastore holding the cluster's etcd.
type DataStoreRef struct {
	// Name of the KdcClusterDatastore.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`

	// Namespace of the KdcClusterDatastore; default: the cluster's namespace.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Dedicated is true when the datastore serves this cluster only.
	// +kubebuilder:default=false
	// +optional
	Dedicated bool `json:"dedicated,omitempty"`
}

// ControlPlaneSpec describes the tenant control plane Deployment C-cp.
type ControlPlaneSpec struct {
	// Replicas of the control plane Deployment.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// KdcClusterSpec defines the desired state of a tenant cluster, as far as backups go.
type KdcClusterSpec struct {
	// Backup configures scheduled snapshots.
	// +kubebuilder:default={}
	// +optional
	Backup BackupSpec `json:"backup,omitempty"`

	// DataStore is the KdcClusterDatastore holding the cluster's etcd.
	// +optional
	DataStore DataStoreRef `json:"dataStore,omitempty"`

	// ControlPlane describes the tenant control plane.
	// +optional
	ControlPlane ControlPlaneSpec `json:"controlPlane,omitempty"`
}

// KdcClusterStatus is the observed state. The controller writes only these fields, so the
// product also works where Kube-DC's larger CRD prunes unknown fields.
type KdcClusterStatus struct {
	// DataStoreName is set by the cluster provisioner once the datastore exists; backups wait for it.
	// +optional
	DataStoreName string `json:"dataStoreName,omitempty"`

	// Conditions: BackupReady and RestoreReady.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// LatestBackupKey is the object key of the newest successful snapshot.
	// +optional
	LatestBackupKey string `json:"latestBackupKey,omitempty"`
	// LatestBackupTime is when the newest successful snapshot completed.
	// +optional
	LatestBackupTime *metav1.Time `json:"latestBackupTime,omitempty"`
	// LatestRestoreKey is the key of the newest successful restore.
	// +optional
	LatestRestoreKey string `json:"latestRestoreKey,omitempty"`
	// LatestRestoreTime is when the newest successful restore completed.
	// +optional
	LatestRestoreTime *metav1.Time `json:"latestRestoreTime,omitempty"`
	// BackupBucket is the bucket snapshots go to.
	// +optional
	BackupBucket string `json:"backupBucket,omitempty"`
	// BackupDestinationPath is s3://bucket/prefix of the newest successful snapshot.
	// +optional
	BackupDestinationPath string `json:"backupDestinationPath,omitempty"`
}

// KdcCluster is a tenant ("managed") Kubernetes cluster of the Kube-DC platform.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=kdc-cl,categories=kube-dc
// +kubebuilder:printcolumn:name="Backup",type=string,JSONPath=`.status.conditions[?(@.type=="BackupReady")].reason`,description="BackupReady reason"
// +kubebuilder:printcolumn:name="Last Backup",type=date,JSONPath=`.status.latestBackupTime`
// +kubebuilder:printcolumn:name="Restore",type=string,JSONPath=`.metadata.annotations.kube-dc\.com/restore-state`,description="Current restore phase"
// +kubebuilder:printcolumn:name="Last Restore",type=date,JSONPath=`.status.latestRestoreTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type KdcCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   KdcClusterSpec   `json:"spec,omitempty"`
	Status KdcClusterStatus `json:"status,omitempty"`
}

// KdcClusterList contains a list of KdcCluster.
// +kubebuilder:object:root=true
type KdcClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KdcCluster `json:"items"`
}

// BackupEnabled reports spec.backup.enabled, defaulting to true.
func (c *KdcCluster) BackupEnabled() bool {
	return c.Spec.Backup.Enabled == nil || *c.Spec.Backup.Enabled
}

// DefaultBackupSchedule is the API default of spec.backup.schedule.
const DefaultBackupSchedule = "0 2 * * *"

// BackupSchedule is spec.backup.schedule, or the API default when the object predates it.
func (c *KdcCluster) BackupSchedule() string {
	if c.Spec.Backup.Schedule != "" {
		return c.Spec.Backup.Schedule
	}
	return DefaultBackupSchedule
}

// DataStoreNamespace is the namespace of the cluster's datastore.
func (c *KdcCluster) DataStoreNamespace() string {
	if c.Spec.DataStore.Namespace != "" {
		return c.Spec.DataStore.Namespace
	}
	return c.Namespace
}

// DataStore is the name of the cluster's datastore: status.dataStoreName, else spec.dataStore.name.
func (c *KdcCluster) DataStore() string {
	if c.Status.DataStoreName != "" {
		return c.Status.DataStoreName
	}
	return c.Spec.DataStore.Name
}
