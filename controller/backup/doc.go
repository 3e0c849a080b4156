// Package backup is the backup controller of kdc-etcd-backup (docs/backup.md):
//
//   - controller.go: the reconciler keeps the per-cluster CronJob C-etcd-backup in the state the
//     spec asks (its builder: cronjob.go; its inputs: inputs.go; the spread schedule:
//     schedule.go) and reports BackupReady and the latest backup in status (status.go);
//   - admission.go: bounds how many backup Jobs run at once in the management cluster;
//   - metrics.go: the backup metrics.
package backup
