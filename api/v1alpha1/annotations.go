package v1alpha1

import "strings"

// Annotations on a KdcCluster. Everything under RestoreAnnotationPrefix except AnnotationRestoreFrom
// is bookkeeping that only the controller's identity may write (the validating webhook enforces
// it), with the single exception of the stamps the mutating webhook adds to an accepted request.
const (
	// RestoreAnnotationPrefix is the prefix of every restore annotation.
	RestoreAnnotationPrefix = "kube-dc.com/restore-"

	// AnnotationRestoreFrom triggers a restore: the key C/C-<ts>.db of a snapshot of this cluster.
	// Written by the operator; cleared by the controller when the restore ends.
	AnnotationRestoreFrom = "kube-dc.com/restore-from"
	// AnnotationRestoreState is the current RestorePhase. Stamped Validating by the mutating
	// webhook, advanced by the controller, cleared when the restore ends.
	AnnotationRestoreState = "kube-dc.com/restore-state"
	// AnnotationRestoreRequestedBy is the username of the requester (mutating webhook); cleared at the end.
	AnnotationRestoreRequestedBy = "kube-dc.com/restore-requested-by"
	// AnnotationRestoreRequestedAt is the RFC 3339 time of the request (mutating webhook); cleared at the end.
	AnnotationRestoreRequestedAt = "kube-dc.com/restore-requested-at"
	// AnnotationRestorePhaseSince is the RFC 3339 time the current phase began (controller);
	// per-phase deadlines are measured from it. Cleared at the end.
	AnnotationRestorePhaseSince = "kube-dc.com/restore-phase-since"
	// AnnotationRestoreControlPlaneReplicas is C-cp's replica count before the drain (controller,
	// recorded before scaling down); cleared at the end.
	AnnotationRestoreControlPlaneReplicas = "kube-dc.com/restore-cp-replicas"
	// AnnotationRestoreEtcdReplicas is DS-etcd's replica count before stopping (controller,
	// recorded before scaling down); cleared at the end.
	AnnotationRestoreEtcdReplicas = "kube-dc.com/restore-etcd-replicas"
	// AnnotationRestoreControlPlanePaused records, before the drain of a control plane owned by a
	// Kamaji TenantControlPlane, whether the restore pauses the TCP ("restore": it removes the
	// pause when it ends, then records "resumed") or found it paused ("before": the pause
	// stays); cleared at the end.
	AnnotationRestoreControlPlanePaused = "kube-dc.com/restore-cp-paused"
	// AnnotationRestoreJobUID is the UID of the restore Job this restore created (controller,
	// recorded right after creating it); cleared at the end.
	AnnotationRestoreJobUID = "kube-dc.com/restore-job-uid"
	// AnnotationRestoreSwapped is "true" once the restore Job swapped the data directory
	// (controller); tells a failure path to roll back. Cleared at the end.
	AnnotationRestoreSwapped = "kube-dc.com/restore-swapped"
	// AnnotationRestoreFailure is the pending failure "<Reason>: <detail>" while the controller
	// brings the cluster back up after a failure (controller); cleared at the end.
	AnnotationRestoreFailure = "kube-dc.com/restore-failure"
	// AnnotationRestoreRolledBack records the rollback after EtcdStartFailed (controller): "true"
	// once the rollback Job swapped the previous data back, or "failed: <detail>" when it could
	// not (etcd then comes back on the restored data). Cleared at the end.
	AnnotationRestoreRolledBack = "kube-dc.com/restore-rolled-back"
	// AnnotationRestoreStartedAt is the RFC 3339 time the controller began the restore; cleared at the end.
	AnnotationRestoreStartedAt = "kube-dc.com/restore-started-at"
	// AnnotationRestorePlan is every input of the restore (snapshot key, image, S3 location,
	// etcd member, user, target version) as JSON, resolved once in Validating so later phases,
	// the recovery and the Jobs run exactly what was verified; cleared at the end.
	AnnotationRestorePlan = "kube-dc.com/restore-plan"
	// AnnotationRestoreMembersRevision is, in a multi-member restore, the revision every member
	// is restored at (the highest of their staged restores), recorded before any member is staged
	// again at it or swapped; cleared at the end.
	AnnotationRestoreMembersRevision = "kube-dc.com/restore-members-revision"
	// AnnotationRestoreEtcdReadiness is the etcd container's readiness probe (JSON), recorded
	// before a multi-member DS-etcd under podManagementPolicy OrderedReady is started without it
	// and put back once every member runs; cleared at the end.
	AnnotationRestoreEtcdReadiness = "kube-dc.com/restore-etcd-readiness"
	// AnnotationRestoreRevision is how the restore moved etcd's revision, a RestoreRevision in its
	// String form (controller, from the restore Job's result, on entering StartingEtcd); cleared
	// at the end.
	AnnotationRestoreRevision = "kube-dc.com/restore-revision"

	// AnnotationRestoreAttempt is set on the verify, restore and rollback Jobs (controller, at
	// creation) to the restore-started-at value of the restore that created them: a Job with the
	// right name but another attempt is left over from an earlier restore and is replaced. It lives
	// on Jobs only (not a KdcCluster bookkeeping annotation) and is never cleared.
	AnnotationRestoreAttempt = "k8s.kube-dc.com/restore-attempt"

	// AnnotationBackupExactSchedule, set to "true" by the operator on a KdcCluster, runs its
	// backups exactly on spec.backup.schedule instead of spreading them (docs/backup.md).
	AnnotationBackupExactSchedule = "kube-dc.com/backup-exact-schedule"
	// AnnotationBackupSchedule and AnnotationBackupScheduleOffset are set on the backup CronJob
	// (controller): the KdcCluster's spec.backup.schedule and how far the CronJob's schedule is
	// moved from it ("37m"; "0s" when it is not, with the reason in AnnotationBackupScheduleNote).
	AnnotationBackupSchedule       = "k8s.kube-dc.com/backup-schedule"
	AnnotationBackupScheduleOffset = "k8s.kube-dc.com/backup-schedule-offset"
	AnnotationBackupScheduleNote   = "k8s.kube-dc.com/backup-schedule-note"
	// AnnotationBackupMode and AnnotationBackupEtcdPrefix are set on the backup CronJob
	// (controller): "whole-etcd" (an etcd snapshot of a dedicated datastore) or "prefix" (the
	// tenant's keys only, on a shared datastore) and, in prefix mode, the tenant's etcd prefix.
	AnnotationBackupMode       = "k8s.kube-dc.com/backup-mode"
	AnnotationBackupEtcdPrefix = "k8s.kube-dc.com/backup-etcd-prefix"

	// AnnotationRestartedAt is set on C-cp's pod template when the control plane is started after a
	// restore, so it comes back with fresh pods (a rollout). Written by the restore controller with
	// the restore's restore-started-at value (so re-applying it is idempotent); never cleared.
	AnnotationRestartedAt = "kube-dc.com/restarted-at"
)

// IsRestoreBookkeeping reports whether key is a restore annotation other than restore-from,
// i.e. one only the controller may write.
func IsRestoreBookkeeping(key string) bool {
	return strings.HasPrefix(key, RestoreAnnotationPrefix) && key != AnnotationRestoreFrom
}

// RestorePhaseOf returns the restore phase of annotations, or "" when none is set.
func RestorePhaseOf(annotations map[string]string) RestorePhase {
	return RestorePhase(annotations[AnnotationRestoreState])
}

// RestoreRunning reports whether annotations show a restore in progress.
func RestoreRunning(annotations map[string]string) bool {
	return RestorePhaseOf(annotations).Running()
}
