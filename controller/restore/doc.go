// Package restore is the restore controller of kdc-etcd-backup: a thin driver of the restore
// engine (package engine, docs/restore.md). Each reconcile is one engine Run; the engine's record
// is kept in the KdcCluster's restore-* annotations and told in Events, logs and metrics
// (controller.go, metrics.go, deadline_metrics.go). jobpods.go caches the full pods of the
// restore's Jobs so a Job is decided as soon as its pod terminates.
package restore
