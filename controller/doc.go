// Package controller holds the lean controller of kdc-etcd-backup: two reconcilers of
// KdcCluster that share one manager.
//
//   - The backup reconciler (backup_*.go) keeps the per-cluster CronJob C-etcd-backup in the
//     state the spec asks and reports BackupReady and the latest backup in status.
//   - The restore reconciler (restore_*.go) runs the restore state machine the webhook already
//     validated: one file per phase step, a short spine in restore_controller.go.
//
// Shared pieces: Options (flags), setCondition (the one way to set a condition).
package controller
