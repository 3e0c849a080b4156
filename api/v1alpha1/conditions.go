package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupReady condition and its reasons. Written by the backup controller.
const (
	// ConditionBackupReady is True when scheduled backups run and the latest one succeeded recently.
	ConditionBackupReady = "BackupReady"

	// ReasonBackupScheduled: the CronJob exists and no failure or staleness is known.
	ReasonBackupScheduled = "Scheduled"
	// ReasonBackupSucceeded: the latest backup Job succeeded and is recent.
	ReasonBackupSucceeded = "BackupSucceeded"
	// ReasonDisabled: spec.backup.enabled is false; no CronJob exists.
	ReasonDisabled = "Disabled"
	// ReasonS3NotAvailable: the managed-k8s-backups ObjectBucketClaim is missing or not Bound.
	ReasonS3NotAvailable = "S3NotAvailable"
	// ReasonDataStoreUnknown: status.dataStoreName is not set, or the datastore cannot be found.
	// Also a restore rejection and failure reason.
	ReasonDataStoreUnknown = "DataStoreUnknown"
	// ReasonBackupFailed: the latest backup Job failed.
	ReasonBackupFailed = "BackupFailed"
	// ReasonSnapshotTooSmall: the latest backup Job exited 2 (the etcd read failed; nothing uploaded).
	ReasonSnapshotTooSmall = "SnapshotTooSmall"
	// ReasonBackupStale: the last success is older than twice the schedule interval.
	ReasonBackupStale = "BackupStale"
	// ReasonPrefixUnknown: the datastore is shared and the tenant's etcd key prefix cannot be
	// determined, so no backup of the tenant alone can be made (none of anyone else is).
	// Also a restore rejection reason.
	ReasonPrefixUnknown = "PrefixUnknown"
)

// RestoreReady condition and its reasons. Written by the restore controller.
const (
	// ConditionRestoreReady reports the outcome of the latest restore.
	ConditionRestoreReady = "RestoreReady"

	// ReasonRestoreSucceeded: the latest restore completed; message `Restore from "<key>" complete`.
	ReasonRestoreSucceeded = "Succeeded"
	// ReasonRestoreFailed: the latest restore failed; message
	// `Restore from "<key>" failed (<Reason>): <detail>` with one of the failure reasons below.
	ReasonRestoreFailed = "Failed"
	// ReasonRestoreRunning: a restore is in progress; the phase is in the restore-state annotation.
	ReasonRestoreRunning = "Restoring"
)

// Reasons a restore request is rejected by the webhook or a restore fails. They appear in
// admission errors and inside the RestoreReady message.
const (
	// ReasonInvalidKey: restore-from is not exactly C/C-<ts>.db.
	ReasonInvalidKey = "InvalidKey"
	// ReasonForeignKey: the key belongs to another cluster.
	ReasonForeignKey = "ForeignKey"
	// ReasonMultiReplicaUnsupported: the datastore's spec.etcd.replicas is not 1.
	ReasonMultiReplicaUnsupported = "MultiReplicaUnsupported"
	// ReasonRestoreInProgress: a restore already runs on this cluster.
	ReasonRestoreInProgress = "RestoreInProgress"
	// ReasonSnapshotUnavailable: the snapshot is missing, unreadable or corrupt (pre-flight).
	ReasonSnapshotUnavailable = "SnapshotUnavailable"
	// ReasonDrainFailed: the control plane could not be scaled down in time.
	ReasonDrainFailed = "DrainFailed"
	// ReasonEtcdStopFailed: the etcd pod did not go away in time.
	ReasonEtcdStopFailed = "EtcdStopFailed"
	// ReasonRestoreJobFailed: the restore Job failed (the data directory is unchanged).
	ReasonRestoreJobFailed = "RestoreJobFailed"
	// ReasonEtcdStartFailed: etcd did not become ready on the restored data (rolled back).
	ReasonEtcdStartFailed = "EtcdStartFailed"
	// ReasonControlPlaneStartFailed: the control plane did not become ready after the restore.
	ReasonControlPlaneStartFailed = "ControlPlaneStartFailed"
	// ReasonObjectsMissing: the control-plane Deployment or etcd StatefulSet does not exist.
	ReasonObjectsMissing = "ObjectsMissing"
	// ReasonEtcdMemberUnknown: the etcd member's name, peer URLs, cluster token or data directory
	// cannot be derived from the etcd StatefulSet's container (pre-flight; nothing was changed).
	ReasonEtcdMemberUnknown = "EtcdMemberUnknown"
	// ReasonRestoreCancelled: restore-from was removed before the restore Job was created (only
	// possible while the webhook is absent); the cluster is brought back on the old data.
	ReasonRestoreCancelled = "Cancelled"
	// ReasonDataStoreInUse: a KdcCluster may not be attached to a datastore while a whole-etcd
	// restore of that datastore runs (admission).
	ReasonDataStoreInUse = "DataStoreInUse"
)

// SetCondition sets a condition on the cluster's status, always filling ObservedGeneration.
// It reports whether anything changed.
func (c *KdcCluster) SetCondition(condType string, status metav1.ConditionStatus, reason, message string) bool {
	return meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: c.Generation,
	})
}
