package controller

import (
	"time"

	kdcv1alpha1 "kube-dc.com/etcd-backup/api/v1alpha1"
)

// BackupStaleDeadline is when a backup that last succeeded at ref becomes stale under schedule
// (BackupReady reason BackupStale): two schedule intervals after ref, and never before the second
// scheduled run after ref plus a grace. interval is the schedule's interval. kubectl-kdc status
// uses it so a stale backup shows even when the manager is not running to report it.
func BackupStaleDeadline(schedule string, ref time.Time) (deadline time.Time, interval time.Duration, err error) {
	return backupStaleDeadline(schedule, ref)
}

// BackupSchedule is the schedule the backup CronJob of c runs on: spec.backup.schedule, or the
// API default.
func BackupSchedule(c *kdcv1alpha1.KdcCluster) string { return backupSchedule(c) }
