package backup

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics of the backup controller, served on the manager's metrics endpoint.
var (
	backupLastSuccessTime = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kdc_etcd_backup_last_success_timestamp_seconds",
		Help: "Unix time of the latest successful etcd backup of a tenant cluster (status.latestBackupTime).",
	}, []string{"namespace", "cluster"})
	backupLastSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kdc_etcd_backup_last_size_bytes",
		Help: "Object size in bytes of the latest successful etcd backup (after a manager restart: read from the Job that status.latestBackupTime records, while its pod exists).",
	}, []string{"namespace", "cluster"})
	backupLastDuration = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kdc_etcd_backup_last_duration_seconds",
		Help: "Duration in seconds of the latest successful etcd backup (after a manager restart: as kdc_etcd_backup_last_size_bytes).",
	}, []string{"namespace", "cluster"})
	backupClustersByReason = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kdc_etcd_backup_clusters",
		Help: "Number of KdcClusters by the reason of their BackupReady condition.",
	}, []string{"reason"})
)

// registerBackupMetrics adds the backup metrics to controller-runtime's registry, once per
// process; Setup calls it, so the metrics are served whenever the backup controller runs.
var registerBackupMetrics = sync.OnceFunc(func() {
	metrics.Registry.MustRegister(backupLastSuccessTime, backupLastSize, backupLastDuration, backupClustersByReason)
})

// backupReasons remembers each cluster's BackupReady reason so kdc_etcd_backup_clusters counts
// every cluster exactly once.
var backupReasons = &backupReasonTracker{reasons: map[types.NamespacedName]string{}}

type backupReasonTracker struct {
	mu      sync.Mutex
	reasons map[types.NamespacedName]string
}

// set records the reason of a cluster.
func (t *backupReasonTracker) set(key types.NamespacedName, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.reasons[key]
	if ok && old == reason {
		return
	}
	if ok {
		backupClustersByReason.WithLabelValues(old).Dec()
	}
	t.reasons[key] = reason
	backupClustersByReason.WithLabelValues(reason).Inc()
}

// backupSizes sets the size and duration gauges and remembers which clusters this process has
// set them for (seedBackupMetrics fills them once after a restart).
var backupSizes = &backupSizeTracker{known: map[types.NamespacedName]bool{}}

type backupSizeTracker struct {
	mu    sync.Mutex
	known map[types.NamespacedName]bool
}

// seen reports whether the gauges of key were set, or found unsettable, by this process.
func (t *backupSizeTracker) seen(key types.NamespacedName) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.known[key]
}

// set sets the gauges of key from a backup's result; a nil result (a Job that wrote none) only
// marks key as seen.
func (t *backupSizeTracker) set(key types.NamespacedName, res *backupTermination) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known[key] = true
	if res != nil {
		backupLastSize.WithLabelValues(key.Namespace, key.Name).Set(float64(res.Size))
		backupLastDuration.WithLabelValues(key.Namespace, key.Name).Set(res.DurationSeconds)
	}
}

// forget drops key; backupReasonTracker.forget deletes its gauges.
func (t *backupSizeTracker) forget(key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.known, key)
}

// forget drops a deleted cluster from every backup metric.
func (t *backupReasonTracker) forget(key types.NamespacedName) {
	t.mu.Lock()
	if old, ok := t.reasons[key]; ok {
		backupClustersByReason.WithLabelValues(old).Dec()
		delete(t.reasons, key)
	}
	t.mu.Unlock()
	backupSizes.forget(key)
	labels := prometheus.Labels{"namespace": key.Namespace, "cluster": key.Name}
	backupLastSuccessTime.Delete(labels)
	backupLastSize.Delete(labels)
	backupLastDuration.Delete(labels)
}
